"""The cache file: schema check, moving an unusable file aside, parent directories.

Most tests go through ``SqliteBackend.open`` (the WARNING it logs is part of the rule);
the rest call ``sqlite_file`` directly.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.unit.cache.helpers import FakeClock, make_entry
from tlspolicy.cache.backends.sqlite import SqliteBackend
from tlspolicy.db.sqlite_file import (
    SCHEMA_VERSION,
    UnusableFileError,
    connect_checked,
    move_aside,
    open_database,
)
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
async def test_sqlite_file_moves_unusable_file_aside(
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


async def test_sqlite_file_keeps_earlier_corrupt_copies(tmp_path: Path) -> None:
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


async def test_sqlite_file_without_recover_refuses_and_leaves_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    _not_a_database(path)
    backend = SqliteBackend(path, max_entries=10, recover=False)
    with pytest.raises(CacheError, match="unusable cache file"):
        await backend.open()
    assert _names(tmp_path) == ["cache.sqlite3"]
    await backend.aclose()


async def test_sqlite_file_creates_parent_directories_0750(tmp_path: Path) -> None:
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


@pytest.mark.parametrize(("damage", "why"), UNUSABLE)
def test_connect_checked_refuses_unusable_file_without_writing(
    tmp_path: Path, damage: Callable[[Path], None], why: str
) -> None:
    path = tmp_path / "cache.sqlite3"
    damage(path)
    original = path.read_bytes()
    with pytest.raises(UnusableFileError, match=why):
        connect_checked(path)
    assert path.read_bytes() == original
    assert _names(tmp_path) == ["cache.sqlite3"]


def test_connect_checked_creates_schema_in_new_file(tmp_path: Path) -> None:
    conn = connect_checked(tmp_path / "cache.sqlite3")
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"entries", "leases"} <= tables
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


def test_move_aside_takes_wal_and_shm_along(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    for name in ("cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"):
        (tmp_path / name).write_text(name)
    target = move_aside(path, FakeClock().now)
    assert target.name == "cache.sqlite3.corrupt-20250615T150640Z"
    assert _names(tmp_path) == [
        "cache.sqlite3.corrupt-20250615T150640Z",
        "cache.sqlite3.corrupt-20250615T150640Z-shm",
        "cache.sqlite3.corrupt-20250615T150640Z-wal",
    ]
    assert (tmp_path / "cache.sqlite3.corrupt-20250615T150640Z-wal").read_text() == (
        "cache.sqlite3-wal"
    )


def test_open_database_reports_what_it_moved(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    _foreign_database(path)
    conn, moved = open_database(path, FakeClock().now, recover=True)
    conn.close()
    assert moved is not None
    why, target = moved
    assert "foreign database" in why
    assert target == tmp_path / "cache.sqlite3.corrupt-20250615T150640Z"
    conn, moved = open_database(path, FakeClock().now, recover=True)
    conn.close()
    assert moved is None


def _open_at(path: str, start: Any, results: Any) -> None:
    start.wait()
    try:
        conn, _ = open_database(Path(path), 1.0, recover=True)
        conn.execute("SELECT COUNT(*) FROM entries").fetchone()
        conn.close()
        results.put("ok")
    except Exception as exc:  # reported to the test, which prints it
        results.put(f"{type(exc).__name__}: {exc}")


def test_two_processes_creating_the_same_file_at_once_both_open_it(tmp_path: Path) -> None:
    """``server.workers``: every worker opens the configured file at start. Without waiting
    for the WAL switch's lock, about one open in three failed with "database is locked"."""
    context = multiprocessing.get_context("fork")
    outcomes = []
    for round_ in range(20):
        start, results = context.Barrier(2), context.Queue()
        path = str(tmp_path / f"c{round_}.sqlite3")
        workers = [context.Process(target=_open_at, args=(path, start, results)) for _ in "ab"]
        for worker in workers:
            worker.start()
        outcomes += [results.get(timeout=30) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
    assert outcomes == ["ok"] * 40
