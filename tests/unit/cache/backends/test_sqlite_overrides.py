"""Overrides in the sqlite file, also in files written before the overrides table existed."""

from __future__ import annotations

import time
from pathlib import Path

from tlspolicy.cache.backends.sqlite import SqliteBackend
from tlspolicy.db.sqlite_file import open_database


async def test_file_without_overrides_table_gets_it_on_open(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    conn, moved = open_database(path, time.time(), recover=False)  # schema version 1 as before
    assert moved is None
    conn.close()
    backend = SqliteBackend(path, max_entries=10)
    await backend.open()
    try:
        await backend.put_override("a.example", '{"x": 1}', time.time() + 60)
        assert await backend.overrides() == {"a.example": '{"x": 1}'}
    finally:
        await backend.aclose()
    again = SqliteBackend(path, max_entries=10)  # another process (the CLI, the server)
    await again.open()
    try:
        assert list(await again.overrides()) == ["a.example"]
        assert await again.delete_override("a.example")
    finally:
        await again.aclose()
