"""SQLite-only behaviour: file handling, corruption recovery, crash safety, other processes."""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.unit.cache.helpers import FakeClock, make_entry
from tlspolicy.cache.backends.sqlite import SqliteBackend
from tlspolicy.errors import CacheError


async def test_sqlite_backend_uses_wal_and_persists_across_restart(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    clock = FakeClock()
    backend = SqliteBackend(path, max_entries=10, clock=clock)
    await backend.open()
    await backend.put(make_entry("a.example", clock.now))
    await backend.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    reopened = SqliteBackend(path, max_entries=10, clock=clock)
    await reopened.open()
    assert await reopened.get("a.example") == make_entry("a.example", clock.now)
    await reopened.aclose()


async def test_sqlite_backend_concurrent_puts_share_one_transaction(tmp_path: Path) -> None:
    clock = FakeClock()
    backend = SqliteBackend(tmp_path / "cache.sqlite3", max_entries=4, clock=clock)
    await backend.open()
    await backend.put(make_entry("old.example", clock.now - 10))
    clock.advance(1)
    names = [f"d{i}.example" for i in range(4)]
    await asyncio.gather(*(backend.put(make_entry(n, clock.now)) for n in names))
    assert (backend._commits.batches, backend._commits.items) == (2, 5)
    # Over the bound: the least recently used goes, never a row of the batch just written.
    assert sorted(e.domain for e in await backend.entries()) == names
    await backend.aclose()


async def test_sqlite_backend_concurrent_reads_share_one_select(tmp_path: Path) -> None:
    clock = FakeClock()
    backend = SqliteBackend(tmp_path / "cache.sqlite3", max_entries=10, clock=clock)
    await backend.open()
    await asyncio.gather(
        *(backend.put(make_entry(n, clock.now)) for n in ("a.example", "b.example"))
    )
    names = ["a.example", "b.example", "a.example", "missing.example"]
    found = await asyncio.gather(*(backend.get(n) for n in names))
    assert [e.domain if e else None for e in found] == ["a.example", "b.example", "a.example", None]
    assert (backend._reads.batches, backend._reads.items) == (1, 4)
    assert await backend.get("b.example") == make_entry("b.example", clock.now)
    assert backend._reads.batches == 2
    await backend.aclose()


async def test_sqlite_backend_open_fails_cleanly_on_unwritable_location(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    backend = SqliteBackend(blocker / "cache.sqlite3", max_entries=10)
    with pytest.raises(CacheError, match="sqlite"):
        await backend.open()
    await backend.aclose()


async def test_sqlite_backend_calls_before_open_raise_cache_error(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "cache.sqlite3", max_entries=10)
    with pytest.raises(CacheError, match="not open"):
        await backend.get("a.example")


async def test_sqlite_backend_second_instance_shares_the_file(tmp_path: Path) -> None:
    """The admin CLI opens the same file while the server runs (WAL allows it)."""
    path = tmp_path / "cache.sqlite3"
    clock = FakeClock()
    server = SqliteBackend(path, max_entries=10, clock=clock)
    admin = SqliteBackend(path, max_entries=10, clock=clock)
    await server.open()
    await admin.open()
    await server.put(make_entry("a.example", clock.now))
    assert [e.domain for e in await admin.entries()] == ["a.example"]
    assert await admin.delete("a.example") is True
    assert await server.get("a.example") is None
    await admin.aclose()
    await server.aclose()


async def test_sqlite_backend_bad_column_types_are_garbage(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    clock = FakeClock()
    backend = SqliteBackend(path, max_entries=10, clock=clock)
    await backend.open()
    good = make_entry("bad.example", clock.now)
    await backend.put(good)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE entries SET hits = 'many' WHERE domain = 'bad.example'")
    conn.close()
    assert await backend.get("bad.example") is None
    assert await backend.count() == 0
    await backend.aclose()


_WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from tlspolicy.cache.entry import CacheEntry, DaneBranch
    from tlspolicy.cache.backends.sqlite import SqliteBackend
    from tlspolicy.dane.result import DaneLevel, DaneResult

    async def main(path):
        backend = SqliteBackend(path, max_entries=1_000_000)
        await backend.open()
        now = time.time()
        result = DaneResult(level=DaneLevel.DANE_ONLY, reason="r" * 500, ttl=300)
        i = 0
        while True:
            branch = DaneBranch(result=result, checked_at=now, expires_at=now + 300)
            await backend.put(CacheEntry(domain=f"d{i % 5000}.example", dane=branch,
                                         used_at=now, hits=i))
            await backend.touch({f"d{(i * 7) % 5000}.example": (now, 1)})
            i += 1
            if i == 300:
                print("ready", flush=True)

    asyncio.run(main(sys.argv[1]))
    """
)


def _write_then_kill_9(path: Path) -> int:
    """Run the writer child until it is busy writing, SIGKILL it; return its exit status."""
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # let it write a few hundred more transactions
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    return child.returncode


async def test_sqlite_backend_readable_after_kill_9_mid_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.sqlite3"
    assert _write_then_kill_9(path) == -signal.SIGKILL
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    backend = SqliteBackend(path, max_entries=1_000_000)
    with caplog.at_level(logging.WARNING, logger="tlspolicy.cache"):
        await backend.open()
    assert caplog.records == []  # not moved aside
    entries = await backend.entries()
    assert len(entries) >= 300
    assert all(e.dane is not None and e.dane.result.reason == "r" * 500 for e in entries)
    await backend.aclose()


async def test_sqlite_backend_unchanged_elsewhere_sees_only_other_connections(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    path = tmp_path / "cache.sqlite3"
    server = SqliteBackend(path, max_entries=10, clock=clock)
    other = SqliteBackend(path, max_entries=10, clock=clock)
    await server.open()
    await other.open()
    assert await server.unchanged_elsewhere() is False  # the first call cannot tell
    assert await server.unchanged_elsewhere() is True
    await server.put(make_entry("own.example", clock.now))
    assert await server.unchanged_elsewhere() is True  # its own writes do not count
    assert await other.get("own.example") is not None
    assert await server.unchanged_elsewhere() is True  # nor another's reads
    await other.put(make_entry("other.example", clock.now))
    assert await server.unchanged_elsewhere() is False
    assert await server.unchanged_elsewhere() is True
    await other.delete("own.example")
    assert await server.unchanged_elsewhere() is False
    await server.aclose()
    await other.aclose()
