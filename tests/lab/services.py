"""Real Redis and PostgreSQL servers for the cache tests, as session-scoped pytest fixtures.

Register with ``pytest_plugins = ["tests.lab.services"]`` in ``tests/conftest.py`` (or run
pytest with ``-p tests.lab.services``). Fixtures:

* ``redis_server``: ``redis-server`` on a free loopback port, no persistence, ``.url``,
  ``.stop()``/``.start()`` (same port, for outage tests).
* ``redis_sentinel``: a Sentinel watching ``redis_server``; ``.url`` is a
  ``redis+sentinel://`` URL for it.
* ``postgres_server``: PostgreSQL 15 from ``/usr/lib/postgresql/15/bin`` with its data and
  socket directories in a fresh temp dir. PostgreSQL refuses to run as root, so when we are
  root ``initdb`` and ``postgres`` run as the ``postgres`` user (``PG_USER``); trust auth,
  fsync off, ``.url`` = ``postgresql://postgres@127.0.0.1:<port>/postgres``, ``.stop()``/
  ``.start()``.

Both servers are children that die with the test process (``PR_SET_PDEATHSIG``, set after
the switch to the unprivileged user so that it survives it). A missing binary is an error,
not a skip: CI must run these tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.lab.netutil import LOOPBACK, Daemon, free_port, wait_until

REDIS_SERVER = "redis-server"
SENTINEL_SERVICE = "tlspolicy-test"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"  # the unprivileged account PostgreSQL runs as when we are root
START_TIMEOUT_S = 20.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """In the child after fork (and after setuid): SIGKILL it when the test process exits."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _redis_command(port: int, *args: bytes) -> bytes:
    """Send one RESP command and return the first reply line (no client library needed)."""
    request = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    with socket.create_connection((LOOPBACK, port), timeout=2.0) as conn:
        conn.sendall(request)
        return conn.recv(4096).split(b"\r\n", 1)[0]


class RedisServer:
    """One redis-server process; ``stop``/``start`` keep the port and the (empty) data."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port(udp=False)
        argv = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
        ]  # fmt: skip
        self.daemon = Daemon("redis-server", argv, directory / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.daemon.running

    def start(self) -> None:
        self.daemon.start()
        wait_until(
            lambda: _redis_command(self.port, b"PING") == b"+PONG",
            timeout=START_TIMEOUT_S,
            what=f"redis-server on port {self.port}",
            alive=self.daemon,
        )

    def stop(self) -> None:
        self.daemon.stop()


class RedisSentinel:
    """A redis-server in sentinel mode watching ``master`` as service ``SENTINEL_SERVICE``."""

    def __init__(self, directory: Path, master: RedisServer) -> None:
        self.port = free_port(udp=False)
        config = directory / "sentinel.conf"  # sentinel rewrites it: must be writable
        config.write_text(
            f"port {self.port}\nbind {LOOPBACK}\ndir {directory}\n"
            f"sentinel monitor {SENTINEL_SERVICE} {LOOPBACK} {master.port} 1\n"
        )
        argv = [REDIS_SERVER, str(config), "--sentinel"]
        self.daemon = Daemon("redis-sentinel", argv, directory / "sentinel.log")

    @property
    def url(self) -> str:
        return f"redis+sentinel://{LOOPBACK}:{self.port}/{SENTINEL_SERVICE}/0"

    def start(self) -> None:
        self.daemon.start()
        wait_until(
            lambda: _redis_command(
                self.port, b"SENTINEL", b"get-master-addr-by-name", SENTINEL_SERVICE.encode()
            ).startswith(b"*2"),
            timeout=START_TIMEOUT_S,
            what=f"redis sentinel on port {self.port}",
            alive=self.daemon,
        )

    def stop(self) -> None:
        self.daemon.stop()


class _UserDaemon(Daemon):
    """A ``Daemon`` run as another user, stopped with a chosen signal first."""

    def __init__(
        self, name: str, argv: Sequence[str], log: Path, *, user: pwd.struct_passwd | None,
        stop_signal: signal.Signals,
    ) -> None:  # fmt: skip
        super().__init__(name, argv, log)
        self.user = user
        self.stop_signal = stop_signal

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, no locks taken
                user=None if self.user is None else self.user.pw_uid,
                group=None if self.user is None else self.user.pw_gid,
                extra_groups=None if self.user is None else [],
            )

    def stop(self) -> None:
        """Ask for a fast shutdown (PostgreSQL: SIGINT drops clients), then the base stop."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10.0)
        super().stop()


class PostgresServer:
    """One PostgreSQL cluster in ``directory`` (owned by ``PG_USER`` when we are root)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.user = pwd.getpwnam(PG_USER) if os.geteuid() == 0 else None
        self.data = directory / "data"
        self.sockets = directory / "sockets"
        self.port = free_port(udp=False)
        argv = [
            str(PG_BIN / "postgres"),
            "-D", str(self.data),
            "-k", str(self.sockets),
            "-h", LOOPBACK,
            "-p", str(self.port),
            "-F",  # fsync off: test data only
            "-c", "max_connections=40",
            "-c", "shared_buffers=16MB",
        ]  # fmt: skip
        self.daemon = _UserDaemon(
            "postgres", argv, directory / "postgres.log", user=self.user,
            stop_signal=signal.SIGINT,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    @property
    def running(self) -> bool:
        return self.daemon.running

    def init(self) -> None:
        if self.user is not None:
            os.chown(self.directory, self.user.pw_uid, self.user.pw_gid)
        self.sockets.mkdir()
        if self.user is not None:
            os.chown(self.sockets, self.user.pw_uid, self.user.pw_gid)
        initdb = [
            str(PG_BIN / "initdb"),
            "-D", str(self.data),
            "-U", "postgres",
            "-A", "trust",
            "-E", "UTF8",
            "--locale=C",
            "--no-sync",
        ]  # fmt: skip
        done = subprocess.run(
            initdb,
            capture_output=True,
            text=True,
            check=False,
            user=None if self.user is None else self.user.pw_uid,
            group=None if self.user is None else self.user.pw_gid,
            extra_groups=None if self.user is None else [],
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        self.daemon.start()
        wait_until(
            self._ready,
            timeout=START_TIMEOUT_S,
            what=f"postgres on port {self.port}",
            alive=self.daemon,
        )

    def stop(self) -> None:
        self.daemon.stop()

    def _ready(self) -> bool:
        probe = [str(PG_BIN / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(self.port)]
        return subprocess.run(probe, check=False).returncode == 0


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if shutil.which(REDIS_SERVER) is None:
        raise RuntimeError(f"{REDIS_SERVER} not installed (Debian package redis-server)")
    directory = Path(tempfile.mkdtemp(prefix="tlspolicy-redis-"))
    server = RedisServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_sentinel(redis_server: RedisServer) -> Iterator[RedisSentinel]:
    """A sentinel for ``redis_server`` (whose ``stop`` it would notice after 30 s only)."""
    directory = Path(tempfile.mkdtemp(prefix="tlspolicy-sentinel-"))
    sentinel = RedisSentinel(directory, redis_server)
    try:
        sentinel.start()
        yield sentinel
    finally:
        sentinel.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if not (PG_BIN / "postgres").exists():
        raise RuntimeError(f"{PG_BIN}/postgres not found (Debian package postgresql-15)")
    # Not under pytest's basetemp: that is root-only (0700) and PG_USER must reach its files.
    directory = Path(tempfile.mkdtemp(prefix="tlspolicy-pg-"))
    server = PostgresServer(directory)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
