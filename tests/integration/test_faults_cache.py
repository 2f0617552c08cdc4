"""Fault matrix, cache: the store breaks under load; answers must stay right and keep coming.

Redis and PostgreSQL are killed with SIGKILL mid-load and restarted; the SQLite file's file
system fills up, turns read-only, or the file is truncated or overwritten while the server
runs. In every cell: 0 wrong answers, 0 connection errors, the server alive, and a shared
store's outage and recovery logged once each. (Outages without load, and ``kill -9`` of the
server during writes, are in ``test_cache_shared_e2e.py`` and ``test_cache_sqlite_e2e.py``.)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cachetools import STS_GOOD, cache_section
from tests.integration.faultload import Load, running_load
from tests.lab.netutil import Daemon, wait_until

pytestmark = pytest.mark.integration

ANSWERS = {
    "dane-only.lab": "OK dane-only",
    "dane-mixed.lab": "OK dane",
    "sts-good.lab": "OK " + STS_GOOD,
    "plain.lab": "NOTFOUND ",
}
RECOVERY_TIMEOUT_S = 20.0  # the reconnect probe backs off from 1 s
TMPFS_BYTES = 2 * 1024 * 1024


def _kill_9(daemon: Daemon) -> None:
    """SIGKILL the daemon's whole process group (no shutdown of any kind), then reap it."""
    proc, daemon.proc = daemon.proc, None
    assert proc is not None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _fresh_domains(server: Any) -> Iterator[str]:
    """Names the server has not seen: each answer is a new write to the store."""
    for n in itertools.count():
        yield f"fault{n}-{server.port}.lab"


def _assert_clean(load: Load, server: Any) -> None:
    assert load.wrong == [], load.wrong[:5]
    assert load.errors == [], load.errors[:5]
    assert server.process.poll() is None, server.log()[-3000:]


@pytest.mark.parametrize(
    "kind",
    [pytest.param("redis", marks=pytest.mark.redis),
     pytest.param("postgres", marks=pytest.mark.postgres)],
)  # fmt: skip
def test_fault_cache_shared_store_killed_mid_load_and_restored(
    start_server: Any, request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    cache = cache_section(kind, request, tmp_path)
    service = request.getfixturevalue(f"{kind}_server")
    server = start_server(cache={**cache, "hot_ttl": 1})
    outage = f"WARNING tlspolicy.cache: cache backend {kind} unavailable"
    recovered = f"INFO tlspolicy.cache: cache backend {kind} available again"
    fresh = _fresh_domains(server)
    with running_load(server, ANSWERS) as load:
        _kill_9(service.daemon)
        try:
            load.wait_answers(200)
            for _ in range(3):  # new lookups while the store is down
                assert server.request(next(fresh)) == "NOTFOUND "
            wait_until(lambda: outage in server.log(), timeout=RECOVERY_TIMEOUT_S,
                       what="the outage warning")  # fmt: skip
        finally:
            service.start()
        wait_until(
            lambda: server.request(next(fresh)) == "NOTFOUND " and recovered in server.log(),
            timeout=RECOVERY_TIMEOUT_S,
            what=f"{kind} used again",
        )
        load.wait_answers(200)
    _assert_clean(load, server)
    log = server.log()
    assert log.count(outage) == 1, log[-3000:]
    assert log.count(recovered) == 1, log[-3000:]
    assert "Traceback" not in log


@contextlib.contextmanager
def _tmpfs(path: Path) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(path)],
                   check=True)  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _sqlite_server(start_server: Any, path: Path) -> Any:
    return start_server(cache={"backend": "sqlite", "path": str(path), "hot_ttl": 1})


def _fill(directory: Path) -> None:
    """Write until the file system is full (ENOSPC)."""
    with contextlib.suppress(OSError), (directory / "filler").open("wb") as out:
        while True:
            out.write(b"\0" * 65536)
            out.flush()


def test_fault_cache_sqlite_file_system_full(start_server: Any, tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "fs") as fs:
        server = _sqlite_server(start_server, fs / "cache.sqlite3")
        fresh = _fresh_domains(server)
        with running_load(server, ANSWERS) as load:
            _fill(fs)
            for _ in range(40):  # every answer a write that cannot happen
                assert server.request(next(fresh)) == "NOTFOUND "
            load.wait_answers(200)
            (fs / "filler").unlink()
            for _ in range(10):
                assert server.request(next(fresh)) == "NOTFOUND "
            load.wait_answers(200)
        _assert_clean(load, server)
        assert server.stop() == 0


def test_fault_cache_sqlite_read_only_file_refuses_to_start_clearly(
    start_server: Any, tmp_path: Path
) -> None:
    """A cache file on a read-only file system: a clear message at start, not silent TEMPs.

    (While the server runs, a file system cannot be remounted read-only under a file open
    for writing; failing writes at run time are the "full" cell.)
    """
    with _tmpfs(tmp_path / "fs") as fs:
        path = fs / "cache.sqlite3"
        first = _sqlite_server(start_server, path)
        for domain, answer in ANSWERS.items():
            assert first.request(domain) == answer
        assert first.stop() == 0
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        try:
            with pytest.raises(RuntimeError, match=r"exited early:\n.*Read-only file system"):
                _sqlite_server(start_server, path)
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(fs)], check=True)


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_fault_cache_sqlite_file_damaged_while_running(
    start_server: Any, tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "cache.sqlite3"
    server = _sqlite_server(start_server, path)
    fresh = _fresh_domains(server)
    with running_load(server, ANSWERS) as load:
        for _ in range(20):
            server.request(next(fresh))
        with path.open("r+b") as f:
            if damage == "truncated":
                f.truncate(0)
            else:
                f.write(os.urandom(8192))
        for _ in range(40):
            assert server.request(next(fresh)) == "NOTFOUND "
        load.wait_answers(300)
    _assert_clean(load, server)
    assert server.stop() == 0
