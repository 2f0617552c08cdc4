"""The benchmark lab: thousands of domains behind a validating Unbound, built on tests/lab.

Zones (NSD, signed with dnspython through ``tests.lab.zones.ZoneSet``):

* ``bench.`` signed, the trust anchor; ``canary.bench`` A for the server's resolver self-check.
* ``dane.bench.`` signed: ``d<i>.dane.bench`` has MX ``mx1``/``mx2.d<i>.dane.bench``, each with
  an A record and TLSA 3 1 1 at ``_25._tcp.<mx>``: every domain is ``dane-only``.
* ``sts.bench.`` unsigned (delegated without DS, like most MTA-STS domains): ``d<i>.sts.bench``
  has MX mx1/mx2 with A records, ``_mta-sts`` TXT and ``mta-sts.d<i>.sts.bench`` A pointing at
  the one HTTPS policy server (``tests.lab.https.HttpsLab``), which serves an ``enforce``
  policy naming both MX hosts.
* ``bogus.bench.`` signed with every signature broken: the self-check's "must fail" canary.
* ``fill.bench.`` is an Unbound ``local-zone ... static``: every name under it is an NXDOMAIN
  answered by Unbound itself. Startup probes ask such names (a real but cheap lookup), and
  the memory scenario names its cloned cache entries after them (``fill.py``).

Unbound is the lab's validating resolver with benchmark settings: cache TTL caps raised so a
warmed cache stays warm for the whole run, bigger caches, and a second listener on
``<address>:53`` for the peer daemon, whose c-ares resolver only reads ``/etc/resolv.conf``
(it gets a private resolv.conf naming that address; see ``servers.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
from tests.lab.dnslab import Blackhole, Nsd, Unbound
from tests.lab.https import Behavior, CertVariant, HttpsLab, _Server
from tests.lab.netutil import LOOPBACK
from tests.lab.scenario import policy_host, sts_policy, sts_txt
from tests.lab.zones import ALL_TYPES, ZoneSet, ZoneSpec, tlsa_value

ROOT = "bench."
DANE_ZONE = "dane.bench."
STS_ZONE = "sts.bench."
BOGUS_ZONE = "bogus.bench."
FILL_ZONE = "fill.bench"
SECURE_CANARY = "canary.bench"
BOGUS_CANARY = "canary.bogus.bench"
RECORD_TTL_S = 3600  # longer than a run: nothing expires mid-benchmark
MX_ADDRESS = "127.0.0.10"  # nothing listens there; policy decisions never connect to an MX
# Unbound options replaced for the benchmark: the test lab caps cache TTLs at 5 s so that
# zone edits show at once; a benchmark wants a warm cache to stay warm.
UNBOUND_OVERRIDES = {
    "cache-max-ttl": "86400",
    "cache-max-negative-ttl": "3600",
    "infra-host-ttl": "900",
}
UNBOUND_EXTRA = (
    "    msg-cache-size: 128m\n"
    "    rrset-cache-size: 256m\n"
    "    key-cache-size: 16m\n"
    "    neg-cache-size: 16m\n"
    "    num-queries-per-thread: 4096\n"
    "    val-log-level: 0\n"
)
PEER_DNS_CANDIDATES = tuple(f"127.53.0.{n}" for n in range(1, 21))
DNS_PORT = 53  # what /etc/resolv.conf implies
WARM_CONCURRENCY = 64  # queries in flight while warming Unbound
WARM_TIMEOUT_S = 5.0
# Listen backlog of the policy server. socketserver's default of 5 overflows when 16 clients
# connect at once, and a dropped SYN is retried only after 1 s (Linux TCP_TIMEOUT_INIT).
HTTPS_BACKLOG = 1024


def dane_domain(i: int) -> str:
    return f"d{i}.dane.bench"


def sts_domain(i: int) -> str:
    return f"d{i}.sts.bench"


def fill_domain(i: int) -> str:
    return f"f{i}.{FILL_ZONE}"


def _port_free(address: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def _set_option(text: str, key: str, value: str) -> str:
    pattern = re.compile(rf"^(\s+{re.escape(key)}:) .*$", re.MULTILINE)
    if not pattern.search(text):
        raise RuntimeError(f"unbound.conf from tests.lab has no {key!r} to override")
    return pattern.sub(rf"\g<1> {value}", text, count=1)


class BenchUnbound(Unbound):
    """The lab's Unbound with benchmark cache settings, the fill zone and a port-53 listener."""

    def __init__(self, workdir: Path, zones: ZoneSet, nsd_port: int) -> None:
        super().__init__(workdir, zones, nsd_port)
        free = [a for a in PEER_DNS_CANDIDATES if _port_free(a, DNS_PORT)]
        if not free:
            raise RuntimeError(f"no 127.53.0.x address has port {DNS_PORT} free")
        self.peer_address = free[0]

    def _config(self) -> str:
        text = super()._config()
        for key, value in UNBOUND_OVERRIDES.items():
            text = _set_option(text, key, value)
        extra = (
            f"    interface: {self.peer_address}@{DNS_PORT}\n"
            f"{UNBOUND_EXTRA}"
            f'    local-zone: "{FILL_ZONE}." static\n'
        )
        return text.replace("remote-control:\n", extra + "remote-control:\n", 1)


class BenchHttps(HttpsLab):
    """The lab's HTTPS policy server, with every host's certificate issued up front.

    The lab issues a certificate on a host's first TLS handshake (about 1 ms each); a
    benchmark must not charge that to whichever client happens to fetch first. Its listen
    backlog is raised to ``HTTPS_BACKLOG``.
    """

    def start(self) -> None:
        _Server.request_queue_size = HTTPS_BACKLOG  # read by TCPServer.server_activate
        super().start()

    def preload_certificates(self, hosts: list[str]) -> None:
        for host in hosts:
            self._context(CertVariant.GOOD, host)


@dataclass
class BenchLab:
    tmp: Path
    resolver: tuple[str, int]
    peer_resolver: str  # address of Unbound's port-53 listener
    blackhole: tuple[str, int]
    https: BenchHttps
    ca_file: Path
    dane_domains: list[str]
    sts_domains: list[str]
    unbound: BenchUnbound
    timings: dict[str, float] = field(default_factory=dict)

    def write_keys(self, path: Path, domains: list[str]) -> Path:
        path.write_text("".join(f"{d}\n" for d in domains))
        return path


def build_zones(n_dane: int, n_sts: int, https_address: str) -> tuple[ZoneSet, dict[str, bytes]]:
    """The zone data and the policy bodies (by policy host name)."""
    zones = ZoneSet(
        [
            ZoneSpec(ROOT),
            ZoneSpec(DANE_ZONE),
            ZoneSpec(STS_ZONE, signed=False, ds_in_parent=False),
            ZoneSpec(BOGUS_ZONE, corrupt=frozenset({ALL_TYPES})),
        ],
        serial=int(time.time()),
    )
    ttl = RECORD_TTL_S
    zones.put(SECURE_CANARY, "A", [MX_ADDRESS], ttl=ttl)
    zones.put(BOGUS_CANARY, "A", [MX_ADDRESS], ttl=ttl)
    for i in range(n_dane):
        domain = dane_domain(i)
        hosts = [f"mx1.{domain}", f"mx2.{domain}"]
        zones.put(domain, "MX", [f"10 {hosts[0]}", f"20 {hosts[1]}"], ttl=ttl)
        for host in hosts:
            zones.put(host, "A", [MX_ADDRESS], ttl=ttl)
            zones.put(f"_25._tcp.{host}", "TLSA", [tlsa_value(3, 1, 1, os.urandom(32))], ttl=ttl)
    policies: dict[str, bytes] = {}
    for i in range(n_sts):
        domain = sts_domain(i)
        hosts = [f"mx1.{domain}", f"mx2.{domain}"]
        zones.put(domain, "MX", [f"10 {hosts[0]}", f"20 {hosts[1]}"], ttl=ttl)
        for host in hosts:
            zones.put(host, "A", [MX_ADDRESS], ttl=ttl)
        zones.put(f"_mta-sts.{domain}", "TXT", [sts_txt("bench1")], ttl=ttl)
        zones.put(policy_host(domain), "A", [https_address], ttl=ttl)
        policies[policy_host(domain)] = sts_policy("enforce", hosts).encode()
    return zones, policies


def warm_questions(lab: BenchLab) -> list[tuple[str, str]]:
    """Every question our server, the peer or postfix-tlspol asks for the benchmark domains.

    postfix-tlspol also asks AAAA for the MX hosts of an MTA-STS domain (its DANE branch
    looks for signed addresses even when the MX answer was unsigned).
    """
    questions: list[tuple[str, str]] = [(SECURE_CANARY, "A"), (BOGUS_CANARY, "A")]
    for domain in lab.dane_domains:
        questions += [(domain, "MX"), (f"_mta-sts.{domain}", "TXT")]
        for host in (f"mx1.{domain}", f"mx2.{domain}"):
            questions += [(host, "A"), (f"_25._tcp.{host}", "TLSA")]
    for domain in lab.sts_domains:
        questions += [(domain, "MX"), (f"_mta-sts.{domain}", "TXT")]
        questions += [(policy_host(domain), "A"), (policy_host(domain), "AAAA")]
        for host in (f"mx1.{domain}", f"mx2.{domain}"):
            questions += [(host, "A"), (host, "AAAA")]
    return questions


async def _warm(address: tuple[str, int], questions: list[tuple[str, str]]) -> int:
    slots = asyncio.Semaphore(WARM_CONCURRENCY)
    failures = 0

    async def one(name: str, rdtype: str) -> None:
        nonlocal failures
        query = dns.message.make_query(name, rdtype, want_dnssec=True)
        async with slots:
            try:
                await dns.asyncquery.udp(query, address[0], timeout=WARM_TIMEOUT_S, port=address[1])
            except (dns.exception.DNSException, OSError):
                failures += 1

    await asyncio.gather(*(one(name, rdtype) for name, rdtype in questions))
    return failures


def warm_resolver(lab: BenchLab) -> tuple[int, int]:
    """Ask Unbound every benchmark question once; returns (questions, failures)."""
    questions = warm_questions(lab)
    failures = asyncio.run(_warm(lab.resolver, questions))
    return len(questions), failures


@contextlib.contextmanager
def start_bench_lab(tmp: Path, *, n_dane: int, n_sts: int) -> Iterator[BenchLab]:
    """HTTPS, NSD, Unbound (warmed) and a blackhole resolver; all stopped on exit."""
    timings: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        started = time.monotonic()
        https = BenchHttps(tmp)
        stack.callback(https.stop)
        https.start()
        zones, policies = build_zones(n_dane, n_sts, https.address)
        https.load({host: Behavior(body=body) for host, body in policies.items()})
        https.preload_certificates(list(policies))
        timings["records_and_certificates_s"] = time.monotonic() - started

        mark = time.monotonic()
        nsd = Nsd(tmp, zones)
        stack.callback(nsd.stop)
        nsd.start()  # signs and writes every zone, then waits until NSD serves them
        timings["sign_and_load_zones_s"] = time.monotonic() - mark

        mark = time.monotonic()
        unbound = BenchUnbound(tmp, zones, nsd.port)
        stack.callback(unbound.stop)
        unbound.start()
        blackhole = Blackhole()
        stack.callback(blackhole.stop)
        blackhole.start()
        timings["start_resolvers_s"] = time.monotonic() - mark

        lab = BenchLab(
            tmp=tmp,
            resolver=(LOOPBACK, unbound.port),
            peer_resolver=unbound.peer_address,
            blackhole=blackhole.address,
            https=https,
            ca_file=https.ca_file,
            dane_domains=[dane_domain(i) for i in range(n_dane)],
            sts_domains=[sts_domain(i) for i in range(n_sts)],
            unbound=unbound,
            timings=timings,
        )
        mark = time.monotonic()
        asked, failed = warm_resolver(lab)
        timings["warm_resolver_s"] = time.monotonic() - mark
        if failed:
            raise RuntimeError(f"warming Unbound: {failed} of {asked} questions got no answer")
        timings["total_s"] = time.monotonic() - started
        yield lab


__all__ = ["BenchLab", "fill_domain", "start_bench_lab"]
