"""The servers under test, as child processes pinned to one core.

* ``tlspolicy serve -c FILE`` from the project virtualenv.
* ``mta-sts-daemon -c FILE`` (postfix-mta-sts-resolver) from its own virtualenv under
  ``bench/.work``. Its DNS client (aiodns/c-ares, also used by aiohttp for the policy host)
  reads only ``/etc/resolv.conf``, so it runs in a private mount namespace (``unshare -m``)
  where a bind-mounted file names the lab Unbound's port-53 listener; the host's resolv.conf
  is never touched. The lab CA reaches its default TLS context through ``SSL_CERT_FILE``.
* ``postfix-tlspol -config FILE`` (Go; a binary the operator built, ``--tlspol-bin``). Its
  own DNS client asks ``dns.address`` (the lab Unbound), but the policy host of an MTA-STS
  fetch is resolved by Go's resolver from ``/etc/resolv.conf``: the same private mount
  namespace as the peer. Go reads trust anchors from ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``
  (an empty directory here, so only the lab CA is trusted).

Each is started through ``taskset -c <core>``; every exec in the chain keeps the pid, so
``process.pid`` is the server itself (for RSS, CPU time and py-spy). Children get
``PR_SET_PDEATHSIG`` and die with the benchmark.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tests.lab.netutil import LOOPBACK, free_port
from tests.lab.services import PostgresServer, RedisServer

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / ".work"
PEER_VENV = WORK / "peer-venv"
PEER_PACKAGE = "postfix-mta-sts-resolver[uvloop]"  # uvloop: our server runs on uvloop too
TLSPOLICY = REPO / ".venv" / "bin" / "tlspolicy"
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
POLL_S = 0.002  # startup is measured to the first answer: poll finely
PROBE_TIMEOUT_S = 10.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def netstring(payload: str) -> bytes:
    data = payload.encode()
    return b"%d:%s," % (len(data), data)


def socketmap_request(port: int, key: str, name: str = "QUERY") -> str:
    """One request on a fresh connection; returns the reply payload."""
    with socket.create_connection((LOOPBACK, port), timeout=PROBE_TIMEOUT_S) as sock:
        sock.sendall(netstring(f"{name} {key}"))
        buf = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"server closed the connection; got {buf!r}")
            buf += chunk
            head, sep, rest = buf.partition(b":")
            if sep and head.isdigit() and len(rest) > int(head):
                return rest[: int(head)].decode()


def ensure_peer_venv() -> str:
    """Create (or complete) the peer's virtualenv; returns the installed version."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
    complete = subprocess.run(
        [str(python), "-c", "import postfix_mta_sts_resolver, uvloop"],
        check=False,
        capture_output=True,
    )
    if complete.returncode != 0:
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", PEER_PACKAGE],
            check=True,
        )
    done = subprocess.run(
        [str(python), "-m", "pip", "show", "postfix-mta-sts-resolver"],
        check=True,
        capture_output=True,
        text=True,
    )
    for line in done.stdout.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


@dataclass
class Startup:
    listen_s: float  # spawn -> accepts TCP connections
    answer_s: float  # spawn -> first reply to a real query
    reply: str


class ServerProcess:
    """One server child; ``start`` measures time to first answer."""

    def __init__(
        self, name: str, argv: Sequence[str], port: int, log: Path, env: dict[str, str]
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.log = log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, probe_key: str) -> Startup:
        with self.log.open("ab") as out:
            spawned = time.monotonic()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, no locks taken
            )
        deadline = spawned + START_TIMEOUT_S
        listen_s = 0.0
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not answer in time:\n{self.log_tail()}")
            try:
                sock = socket.create_connection((LOOPBACK, self.port), timeout=0.5)
            except OSError:
                time.sleep(POLL_S)
                continue
            listen_s = time.monotonic() - spawned
            sock.close()
            break
        reply = socketmap_request(self.port, probe_key)
        return Startup(listen_s=listen_s, answer_s=time.monotonic() - spawned, reply=reply)

    def rss_kib(self) -> int:
        return _status_kib(self.pid, "VmRSS")

    def peak_rss_kib(self) -> int:
        return _status_kib(self.pid, "VmHWM")

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {key}")


def our_config(
    path: Path,
    *,
    port: int,
    nameserver: tuple[str, int],
    ca_file: Path,
    cache: dict[str, Any],
    dns_timeout: float = 2.0,
    secure_canary: str,
    bogus_canary: str,
    mta_sts: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
) -> Path:
    """A ``tlspolicy`` configuration: defaults except what the lab needs to be reachable."""
    config = {
        "server": {"listen": [f"{LOOPBACK}:{port}"], **(server or {})},
        "dns": {
            "nameservers": [f"{nameserver[0]}:{nameserver[1]}"],
            "timeout": dns_timeout,
            "selfcheck_secure_name": secure_canary,
            "selfcheck_bogus_name": bogus_canary,
        },
        "mta_sts": {"ca_file": str(ca_file), "allow_private_addresses": True, **(mta_sts or {})},
        "cache": cache,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def ours(workdir: Path, tag: str, core: int, **config: Any) -> ServerProcess:
    port = free_port(udp=False)
    conf = our_config(workdir / f"tlspolicy-{tag}.yml", port=port, **config)
    argv = ["taskset", "-c", str(core), str(TLSPOLICY), "serve", "-c", str(conf)]
    return ServerProcess(
        "tlspolicy", argv, port, workdir / f"tlspolicy-{tag}.log", dict(os.environ)
    )


def floor(workdir: Path, core: int, seconds: float, loadgen: Path) -> ServerProcess:
    """``loadgen -L``: a C responder with one fixed reply, the floor under any real server."""
    port = free_port(udp=False)
    argv = ["taskset", "-c", str(core), str(loadgen), "-L", "-p", str(port), "-d", f"{seconds:g}"]
    return ServerProcess("C responder", argv, port, workdir / "floor.log", dict(os.environ))


def peer(
    workdir: Path, tag: str, core: int, *, resolver_address: str, ca_file: Path, cache_size: int
) -> ServerProcess:
    """postfix-mta-sts-resolver with its documented defaults, its cache sized for the run."""
    port = free_port(udp=False)
    conf = workdir / f"peer-{tag}.yml"
    conf.write_text(
        yaml.safe_dump(
            {
                "host": LOOPBACK,
                "port": port,
                "cache": {"type": "internal", "options": {"cache_size": cache_size}},
                "default_zone": {"strict_testing": False, "timeout": 4},
            },
            sort_keys=False,
        )
    )
    daemon = PEER_VENV / "bin" / "mta-sts-daemon"
    argv = _private_resolv(workdir / "peer-resolv.conf", resolver_address, core,
                           [str(daemon), "-c", str(conf)])  # fmt: skip
    env = {**os.environ, "SSL_CERT_FILE": str(ca_file)}
    env.pop("SSL_CERT_DIR", None)  # only the lab CA, as our server gets with mta_sts.ca_file
    return ServerProcess("postfix-mta-sts-resolver", argv, port, workdir / f"peer-{tag}.log", env)


def _private_resolv(resolv: Path, address: str, core: int, command: list[str]) -> list[str]:
    """``command`` on ``core`` in a mount namespace whose /etc/resolv.conf names ``address``."""
    resolv.write_text(f"nameserver {address}\n")
    inner = (
        f"mount --bind {resolv} /etc/resolv.conf && exec taskset -c {core} {shlex.join(command)}"
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner]


def tlspol(workdir: Path, tag: str, core: int, *, binary: Path, resolver: tuple[str, int],
           resolver_address: str, ca_file: Path, log_level: str) -> ServerProcess:  # fmt: skip
    """postfix-tlspol with its defaults (prefetch on, its in-memory cache with a cache file)."""
    port = free_port(udp=False)
    conf = workdir / f"tlspol-{tag}.yml"
    server = {"address": f"{LOOPBACK}:{port}", "cache-file": str(workdir / f"tlspol-{tag}.db"),
              "log-level": log_level}  # fmt: skip
    dns = {"address": f"{resolver[0]}:{resolver[1]}"}
    conf.write_text(yaml.safe_dump({"server": server, "dns": dns}, sort_keys=False))
    argv = _private_resolv(workdir / "tlspol-resolv.conf", resolver_address, core,
                           [str(binary), "-config", str(conf)])  # fmt: skip
    certs = workdir / "tlspol-no-certs"  # SSL_CERT_DIR: empty, so /etc/ssl/certs is not read
    certs.mkdir(exist_ok=True)
    env = {**os.environ, "SSL_CERT_FILE": str(ca_file), "SSL_CERT_DIR": str(certs)}
    return ServerProcess("postfix-tlspol", argv, port, workdir / f"tlspol-{tag}.log", env)


@contextlib.contextmanager
def cache_service(backend: str) -> Iterator[dict[str, Any] | None]:
    """Redis or PostgreSQL for one backend run (tests/lab/services.py); None for the others."""
    if backend not in ("redis", "postgres"):
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix=f"tlspolicy-bench-{backend}-"))
    service: RedisServer | PostgresServer
    try:
        if backend == "redis":
            service = RedisServer(directory)
            service.start()
        else:
            service = PostgresServer(directory)
            service.init()
            service.start()
        try:
            yield {"backend": backend, "url": service.url}
        finally:
            service.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
