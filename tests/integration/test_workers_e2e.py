"""``server.workers``: several processes on one port, restarts under load without an error.

The load behaves like Postfix's socketmap client (``dict_sockmap.c``): persistent
connections, one request at a time, and a broken connection (EOF or reset) is retried once
on a new connection. An error is what Postfix would log as a lookup error: a refused or
failed connect, a second broken connection in a row, a timeout or a wrong answer.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import ServerProcess, read_netstring

pytestmark = pytest.mark.integration

KEYS = ("sts-good.lab", "dane-only.lab", "plain.lab")
CONNECTIONS = 64
REPLY_TIMEOUT_S = 20.0


@dataclass
class LoadStats:
    answers: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)


async def _exchange(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
) -> bytes:
    reader, writer = conn
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b":")
    data = await reader.readexactly(int(head[:-1]) + 1)
    if not data.endswith(b","):
        raise ConnectionError("reply not terminated by ','")
    return data[:-1]


async def _client(
    host: str, port: int, expected: dict[str, bytes], stop: asyncio.Event, stats: LoadStats
) -> None:
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    turn = 0
    while not stop.is_set():
        key = KEYS[turn % len(KEYS)]
        turn += 1
        request = b"%d:QUERY %s," % (len(key) + 6, key.encode())
        reply = None
        for attempt in range(2):  # dict_sockmap retries a broken connection once
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                reply = await asyncio.wait_for(_exchange(conn, request), REPLY_TIMEOUT_S)
                break
            except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
                if conn is not None:
                    conn[1].close()
                conn = None
                if attempt == 0:
                    stats.retries += 1
                    continue
                stats.errors.append(f"{key}: broken twice: {exc!r}")
            except (OSError, TimeoutError) as exc:
                stats.errors.append(f"{key}: {exc!r}")
                if conn is not None:
                    conn[1].close()
                conn = None
                break
        if reply is None:
            await asyncio.sleep(0.01)
            continue
        if reply != expected[key]:
            stats.errors.append(f"{key}: {reply!r} != {expected[key]!r}")
        stats.answers += 1
    if conn is not None:
        conn[1].close()


async def _load_through(server: ServerProcess, action: Any) -> LoadStats:
    """Run ``CONNECTIONS`` clients, await ``action()`` meanwhile, then a little more load."""
    expected = {key: server.request(key).encode() for key in KEYS}  # warm every worker's cache
    stats = LoadStats()
    stop = asyncio.Event()
    clients = [
        asyncio.create_task(_client(server.host, server.port, expected, stop, stats))
        for _ in range(CONNECTIONS)
    ]
    await asyncio.sleep(0.5)
    before = stats.answers
    await action()
    after = stats.answers
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*clients)
    assert before > 0 and stats.answers > after, (before, after, stats.answers)
    return stats


async def _log_line(server: ServerProcess, pattern: str) -> str:
    deadline = time.monotonic() + 90.0
    while time.monotonic() < deadline:
        found = re.findall(pattern, server.log())
        if found:
            return str(found[-1])
        await asyncio.sleep(0.1)
    raise AssertionError(f"{pattern!r} not logged:\n{server.log()}")


def _worker_pids(server: ServerProcess) -> dict[int, int]:
    """The newest pid per worker slot, from the supervisor's 'worker N ready (pid P)'."""
    pids: dict[int, int] = {}
    for slot, pid in re.findall(r"worker (\d+) ready \(pid (\d+)\)", server.log()):
        pids[int(slot)] = int(pid)
    return pids


def _start_workers(start_server: Any, tmp_path: Path) -> ServerProcess:
    server: ServerProcess = start_server(
        server={"workers": 2},
        cache={"backend": "sqlite", "path": str(tmp_path / "cache.sqlite3")},
    )
    deadline = time.monotonic() + 60
    while len(_worker_pids(server)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "2 workers ready" in server.log(), server.log()
    return server


def test_e2e_rolling_restart_under_load_has_no_error(start_server: Any, tmp_path: Path) -> None:
    server = _start_workers(start_server, tmp_path)
    old = _worker_pids(server)

    async def restart() -> None:
        os.kill(server.process.pid, signal.SIGUSR2)
        await _log_line(server, r"rolling restart done")

    stats = asyncio.run(_load_through(server, restart))
    assert stats.errors == [], (stats.errors[:5], server.log()[-4000:])
    print(f"answers {stats.answers}, retried {stats.retries}")
    new = _worker_pids(server)
    assert set(new) == {0, 1} and not set(new.values()) & set(old.values()), (old, new)
    assert server.stop() == 0
    assert "Traceback" not in server.log()


def test_e2e_killed_worker_is_respawned_under_load(start_server: Any, tmp_path: Path) -> None:
    server = _start_workers(start_server, tmp_path)
    victim = _worker_pids(server)[1]

    async def kill() -> None:
        os.kill(victim, signal.SIGKILL)
        await _log_line(server, rf"worker 1 ready \(pid (?!{victim}\))\d+\)")

    stats = asyncio.run(_load_through(server, kill))
    assert stats.errors == [], (stats.errors[:5], server.log()[-4000:])
    print(f"answers {stats.answers}, retried {stats.retries}")
    assert _worker_pids(server)[1] != victim
    assert server.stop() == 0


def test_e2e_workers_share_the_sqlite_cache(
    start_server: Any, tmp_path: Path, fresh_lab: Any
) -> None:
    server = _start_workers(start_server, tmp_path)
    assert server.request("sts-good.lab").startswith("OK secure")
    fetched = fresh_lab.https.count("mta-sts.sts-good.lab")
    for _ in range(20):  # new connections: SO_REUSEPORT spreads them over both workers
        with socket.create_connection((server.host, server.port), timeout=20) as sock:
            sock.sendall(b"18:QUERY sts-good.lab,")
            assert read_netstring(sock).startswith(b"OK secure")
    assert fresh_lab.https.count("mta-sts.sts-good.lab") == fetched
