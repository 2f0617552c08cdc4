"""SQLite-only behaviour: file handling, corruption recovery, crash safety, other processes."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.cache.helpers import FakeClock, make_entry
from tlspolicy.cache.sqlite_backend import SCHEMA_VERSION, SqliteBackend
from tlspolicy.errors import CacheError


def _not_a_database(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite file, just text\n" * 200)


def _damaged_pages(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute(
        "CREATE TABLE entries (domain TEXT PRIMARY KEY, data TEXT NOT NULL, "
        "keep_until REAL NOT NULL, used_at REAL NOT NULL, hits INTEGER NOT NULL)"
    )
    conn.executemany(
        "INSERT INTO entries VALUES (?, ?, 9e9, 0, 0)",
        [(f"d{i}.example", "x" * 300) for i in range(400)],
    )
    conn.commit()
    conn.close()
    with path.open("r+b") as handle:
        handle.seek(4096 * 4)
        handle.write(bytes(range(256)) * 48)  # three pages of nonsense in the b-tree


def _future_schema(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE entries (domain TEXT PRIMARY KEY, blob BLOB)")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()


def _foreign_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()


def _wrong_columns(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE entries (domain TEXT PRIMARY KEY, data TEXT)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.commit()
    conn.close()


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


UNUSABLE = [
    pytest.param(_not_a_database, "not a database", id="not-a-database"),
    pytest.param(_damaged_pages, "malformed", id="damaged-pages"),
    pytest.param(_future_schema, "schema version 99", id="future-schema"),
    pytest.param(_foreign_database, "foreign database", id="foreign-tables"),
    pytest.param(_wrong_columns, "unexpected entries columns", id="wrong-columns"),
]


@pytest.mark.parametrize(("damage", "why"), UNUSABLE)
async def test_sqlite_backend_moves_unusable_file_aside(
    tmp_path: Path,
    damage: Callable[[Path], None],
    why: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "cache.sqlite3"
    damage(path)
    original = path.read_bytes()
    clock = FakeClock(now=1_750_000_000.0)  # 2025-06-15T15:06:40Z
    backend = SqliteBackend(path, max_entries=100, clock=clock)
    with caplog.at_level(logging.WARNING, logger="tlspolicy.cache"):
        await backend.open()
    aside = tmp_path / "cache.sqlite3.corrupt-20250615T150640Z"
    assert aside.read_bytes() == original
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert why in record.getMessage() and str(aside) in record.getMessage()
    assert await backend.count() == 0
    await backend.put(make_entry("a.example", clock.now))
    assert await backend.get("a.example") == make_entry("a.example", clock.now)
    await backend.aclose()


async def test_sqlite_backend_keeps_earlier_corrupt_copies(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    clock = FakeClock()
    for _ in range(2):
        _not_a_database(path)
        backend = SqliteBackend(path, max_entries=10, clock=clock)
        await backend.open()
        await backend.aclose()
    names = [name for name in _names(tmp_path) if ".corrupt-" in name]
    assert names == [
        "cache.sqlite3.corrupt-20250615T150640Z",
        "cache.sqlite3.corrupt-20250615T150640Z.1",
    ]


async def test_sqlite_backend_without_recover_refuses_and_leaves_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    _not_a_database(path)
    backend = SqliteBackend(path, max_entries=10, recover=False)
    with pytest.raises(CacheError, match="unusable cache file"):
        await backend.open()
    assert _names(tmp_path) == ["cache.sqlite3"]
    await backend.aclose()


async def test_sqlite_backend_creates_parent_directories_0750(tmp_path: Path) -> None:
    path = tmp_path / "state" / "tlspolicy" / "cache.sqlite3"
    old_umask = os.umask(0o077)  # mkdir alone would give 0700
    try:
        backend = SqliteBackend(path, max_entries=10)
        await backend.open()
    finally:
        os.umask(old_umask)
    assert (path.parent.stat().st_mode & 0o777) == 0o750
    assert (path.parent.parent.stat().st_mode & 0o777) == 0o750
    await backend.aclose()


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
    from tlspolicy.cache.sqlite_backend import SqliteBackend
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
