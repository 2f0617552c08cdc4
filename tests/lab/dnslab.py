"""The lab's DNS: NSD serving the signed lab zones, Unbound validating them, a blackhole resolver.

Shape of the lab (all on 127.0.0.1, free ports, files in one temp dir):
* ``Nsd`` runs ``nsd -d`` with the zone files rendered by ``zones.ZoneSet``. Runtime edits
  rewrite the changed zone files and ``nsd-control reload`` them over a unix control socket;
  ``apply`` returns once NSD serves the new SOA serial of every changed zone.
* ``Unbound`` runs ``unbound -d`` as a validating resolver: the first zone's DS is its only trust
  anchor, every lab zone and the root are stub zones on NSD (so nothing leaves the machine),
  cache TTLs are capped at ``CACHE_MAX_TTL_S`` and ``flush`` empties the cache below a zone.
* ``Blackhole`` reads UDP and TCP queries and never answers, for resolver-timeout tests.
* ``LabDns`` is the editor tests use (``lab.dns``): ``set_records`` / ``delete_records`` /
  ``corrupt`` / ``apply`` / ``reset``.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from tests.lab.netutil import LOOPBACK, Daemon, free_port, wait_until
from tests.lab.zones import DEFAULT_TTL_S, ZoneSet

START_TIMEOUT_S = 10.0  # NSD and Unbound normally answer within 0.2 s
APPLY_TIMEOUT_S = 5.0  # a reload normally shows within 0.1 s
START_ATTEMPTS = 3  # another session may take our "free" port before the daemon binds it
CACHE_MAX_TTL_S = 5  # Unbound cache-max-ttl/-negative-ttl/val-bogus-ttl: changes show quickly
PROBE_TIMEOUT_S = 0.5  # one test query
READY_PROBE_TIMEOUT_S = 0.05  # one readiness poll; loopback answers take < 1 ms
CONTROL_TIMEOUT_S = 5.0
RETRY_ON = (OSError, dns.exception.DNSException)  # "not answering yet" while polling


def _zone_file(origin: dns.name.Name) -> str:
    return f"{origin.to_text().rstrip('.') or 'root'}.zone"


def _check_config(tool: str, conf: Path) -> None:
    """Fail with the tool's own message when the generated config is wrong for this version."""
    done = subprocess.run([tool, str(conf)], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{tool} {conf}: {done.stdout}{done.stderr}")


def query(
    qname: str,
    rdtype: str,
    port: int,
    *,
    host: str = LOOPBACK,
    dnssec: bool = True,
    timeout: float = PROBE_TIMEOUT_S,
) -> dns.message.Message:
    """One UDP query with DO set (and TCP on truncation); raises dns.exception.Timeout."""
    request = dns.message.make_query(qname, rdtype, want_dnssec=dnssec)
    response, _ = dns.query.udp_with_fallback(request, host, timeout=timeout, port=port)
    return response


class Nsd:
    """The authoritative server for every zone of ``zones``."""

    def __init__(self, workdir: Path, zones: ZoneSet) -> None:
        self.dir = workdir
        self.zones = zones
        self.conf = workdir / "nsd.conf"
        self.port = 0
        self.daemon = Daemon("nsd", [], workdir / "nsd.log")

    def _config(self) -> str:
        d = self.dir
        zone_blocks = "".join(
            f'zone:\n    name: "{origin}"\n    zonefile: "{_zone_file(origin)}"\n'
            for origin in self.zones.specs
        )
        return f"""server:
    ip-address: {LOOPBACK}
    port: {self.port}
    do-ip4: yes
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "{d}"
    pidfile: "{d}/nsd.pid"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    zonelistfile: "{d}/zone.list"
    database: ""
    logfile: "{self.daemon.log}"
    verbosity: 1
    server-count: 1
    reuseport: no
    xfrd-reload-timeout: 0
    zonefiles-write: 0
    hide-version: yes
remote-control:
    control-enable: yes
    control-interface: "{d}/nsd.ctl"
{zone_blocks}"""

    def write_zones(self, origins: Iterable[dns.name.Name]) -> None:
        now = time.time()
        for origin in origins:
            target = self.dir / _zone_file(origin)
            staging = target.with_suffix(".tmp")
            staging.write_text(self.zones.render(origin, now=now))
            staging.replace(target)  # NSD never reads a half-written file

    def start(self) -> None:
        self.zones.take_dirty()
        self.write_zones(self.zones.specs)
        for attempt in range(START_ATTEMPTS):
            self.port = free_port()
            self.conf.write_text(self._config())
            _check_config("nsd-checkconf", self.conf)
            self.daemon.argv = ["nsd", "-d", "-c", str(self.conf)]
            self.daemon.start()
            try:
                self.wait_serials(self.zones.specs, timeout=START_TIMEOUT_S)
                return
            except RuntimeError:
                self.daemon.stop()
                if attempt == START_ATTEMPTS - 1:
                    raise

    def serial(self, origin: dns.name.Name) -> int | None:
        response = query(
            origin.to_text(), "SOA", self.port, dnssec=False, timeout=READY_PROBE_TIMEOUT_S
        )
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(rrset[0].serial)
        return None

    def wait_serials(self, origins: Iterable[dns.name.Name], *, timeout: float) -> None:
        for origin in origins:
            want = self.zones.serials[origin]
            wait_until(
                lambda o=origin, w=want: self.serial(o) == w,  # type: ignore[misc]
                timeout=timeout,
                what=f"NSD to serve {origin} serial {want}",
                alive=self.daemon,
                retry_on=RETRY_ON,
            )

    def reload(self, origins: set[dns.name.Name]) -> None:
        """Rewrite and reload the given zones; returns when NSD serves their new serials."""
        self.write_zones(origins)
        for origin in origins:
            subprocess.run(
                ["nsd-control", "-c", str(self.conf), "reload", origin.to_text()],
                check=True,
                capture_output=True,
                timeout=CONTROL_TIMEOUT_S,
            )
        self.wait_serials(origins, timeout=APPLY_TIMEOUT_S)

    def stop(self) -> None:
        self.daemon.stop()


class Unbound:
    """A validating resolver whose only trust anchor is the lab's first zone."""

    def __init__(self, workdir: Path, zones: ZoneSet, nsd_port: int) -> None:
        self.dir = workdir
        self.zones = zones
        self.nsd_port = nsd_port
        self.conf = workdir / "unbound.conf"
        self.port = 0
        self.daemon = Daemon("unbound", [], workdir / "unbound.log")

    def _config(self) -> str:
        d = self.dir
        stub_origins = [*self.zones.specs, dns.name.root]
        stubs = "".join(
            f'stub-zone:\n    name: "{origin}"\n    stub-addr: {LOOPBACK}@{self.nsd_port}\n'
            for origin in stub_origins
        )
        ttl = CACHE_MAX_TTL_S
        return f"""server:
    interface: {LOOPBACK}@{self.port}
    port: {self.port}
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    so-reuseport: no
    module-config: "validator iterator"
    trust-anchor-file: "{d}/trust-anchor.ds"
    trust-anchor-signaling: no
    root-key-sentinel: no
    do-not-query-localhost: no
    qname-minimisation: no
    aggressive-nsec: no
    prefetch: no
    serve-expired: no
    cache-min-ttl: 0
    cache-max-ttl: {ttl}
    cache-max-negative-ttl: {ttl}
    val-bogus-ttl: {ttl}
    infra-host-ttl: {ttl}
    val-log-level: 2
    ede: yes
    access-control: 127.0.0.0/8 allow
remote-control:
    control-enable: yes
    control-interface: "{d}/unbound.ctl"
    control-use-cert: no
{stubs}"""

    def start(self) -> None:
        (self.dir / "trust-anchor.ds").write_text(self.zones.trust_anchor())
        root = self.zones.root.to_text()
        for attempt in range(START_ATTEMPTS):
            self.port = free_port()
            self.conf.write_text(self._config())
            _check_config("unbound-checkconf", self.conf)
            self.daemon.argv = ["unbound", "-d", "-c", str(self.conf)]
            self.daemon.start()
            try:
                wait_until(
                    lambda: self._validates(root),
                    timeout=START_TIMEOUT_S,
                    what=f"Unbound to validate {root} SOA",
                    alive=self.daemon,
                    retry_on=RETRY_ON,
                )
                return
            except RuntimeError:
                self.daemon.stop()
                if attempt == START_ATTEMPTS - 1:
                    raise

    def _validates(self, name: str) -> bool:
        response = query(name, "SOA", self.port, timeout=READY_PROBE_TIMEOUT_S)
        return bool(response.flags & dns.flags.AD)

    def control(self, *command: str) -> str:
        """Run one ``unbound-control`` command; raises CalledProcessError on failure."""
        done = subprocess.run(
            ["unbound-control", "-c", str(self.conf), *command],
            check=True,
            capture_output=True,
            text=True,
            timeout=CONTROL_TIMEOUT_S,
        )
        return done.stdout

    def flush(self, origins: Iterable[dns.name.Name]) -> None:
        """Forget everything cached at or below ``origins``, plus all bogus and negative data."""
        for origin in origins:
            self.control("flush_zone", origin.to_text())
        self.control("flush_bogus")
        self.control("flush_negative")

    def stop(self) -> None:
        self.daemon.stop()


class Blackhole:
    """Accepts DNS over UDP and TCP on one port, reads everything, answers nothing."""

    def __init__(self) -> None:
        self.port = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sockets: list[socket.socket] = []

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    def start(self) -> None:
        self.port = free_port()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.bind(self.address)
        tcp.bind(self.address)
        tcp.listen(64)
        self._sockets = [udp, tcp]
        self._thread = threading.Thread(target=self._run, name="dns-blackhole", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        udp, tcp = self._sockets
        with selectors.DefaultSelector() as sel:
            sel.register(udp, selectors.EVENT_READ)
            sel.register(tcp, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.1):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    with contextlib.suppress(OSError):
                        if sock is udp:
                            udp.recvfrom(65535)
                        elif sock is tcp:
                            conn, _ = tcp.accept()
                            self._sockets.append(conn)
                            sel.register(conn, selectors.EVENT_READ)
                        elif not sock.recv(65535):
                            sel.unregister(sock)
                            sock.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        for sock in self._sockets:
            sock.close()


class LabDns:
    """What tests use to change DNS data at runtime (``lab.dns``)."""

    def __init__(self, zones: ZoneSet, nsd: Nsd, unbound: Unbound) -> None:
        self.zones = zones
        self.nsd = nsd
        self.unbound = unbound
        self._initial = (dict(zones.records), set(zones.corrupted))

    def set_records(
        self, name: str, rdtype: str, values: Iterable[str], *, ttl: int = DEFAULT_TTL_S
    ) -> None:
        """Stage a replacement of ``name``/``rdtype`` (TXT values keep their quotes)."""
        self.zones.put(name, rdtype, values, ttl=ttl)

    def delete_records(self, name: str, rdtype: str | None = None) -> None:
        """Stage removal of one RRset, or of every RRset at ``name``."""
        self.zones.delete(name, rdtype)

    def corrupt(self, name: str, rdtype: str, *, on: bool = True) -> None:
        """Stage breaking (or repairing) the RRSIG over one RRset: the resolver SERVFAILs it."""
        self.zones.corrupt_rrset(name, rdtype, on=on)

    def get(self, name: str, rdtype: str) -> tuple[int, list[str]] | None:
        """``(ttl, values)`` currently staged for ``name``/``rdtype``, or None."""
        return self.zones.get(name, rdtype)

    def apply(self) -> None:
        """Re-sign changed zones, reload NSD, flush Unbound; the change is visible on return."""
        dirty = self.zones.take_dirty()
        if not dirty:
            return
        self.nsd.reload(dirty)
        self.unbound.flush(dirty)

    def reset(self) -> None:
        """Restore the catalogue's records and apply, for tests that changed them."""
        records, corrupted = self._initial
        changed = {
            k
            for k in records.keys() | self.zones.records.keys()
            if records.get(k) != self.zones.records.get(k)
        }
        changed |= corrupted ^ self.zones.corrupted
        self.zones.records = dict(records)
        self.zones.corrupted = set(corrupted)
        self.zones.dirty.update(self.zones.zone_of(name) for name, _ in changed)
        self.apply()
