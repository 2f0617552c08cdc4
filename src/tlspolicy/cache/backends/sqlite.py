"""The default cache backend: one SQLite file, used from one dedicated worker thread.

Rules kept here:

* Every use of the connection happens in the single worker thread (``cache.sqlite_thread``),
  so the event loop never blocks on disk and sqlite3's same-thread check always holds.
* ``journal_mode=WAL`` + ``synchronous=NORMAL``: a crash or ``kill -9`` may lose the last
  transactions but never leaves a broken file, and other processes (the admin CLI) can read
  and write the same file while the server runs; ``busy_timeout`` covers their short locks.
* A file that is not a database, fails ``PRAGMA integrity_check`` or has a schema this
  version does not know is renamed aside (``<path>.corrupt-<UTC timestamp>``, with its
  ``-wal``/``-shm``) with a WARNING, and the cache starts empty (``cache.sqlite_file``).
  The cache only saves lookups, so losing it is cheap; refusing to start is not.
* Bounded by ``max_entries``: an insert over the bound deletes expired rows, then the least
  recently used (smallest ``used_at``) down to ``EVICT_TO_FRACTION`` of the bound. Expired
  rows are also deleted every ``CLEANUP_INTERVAL_S`` as a side effect of writes.
* Writes of one moment share a transaction (``cache.group_commit``); each ``put`` still
  returns only once its row is committed, and raises the batch's ``CacheError``.
* ``unchanged_elsewhere`` compares ``PRAGMA data_version``: another process's commit (a
  worker, the admin CLI) changes it, this connection's own do not (``cache.quiet``).
* Every ``sqlite3`` or OS error becomes ``CacheError`` in ``SqliteThread.run``, nowhere else.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tlspolicy.cache.backend import (
    CLEANUP_INTERVAL_S,
    EVICT_TO_FRACTION,
    decode_entry,
    encode_entry,
)
from tlspolicy.cache.entry import RETAIN_AFTER_EXPIRY_S, CacheEntry
from tlspolicy.db.group_commit import GroupCommit
from tlspolicy.db.sqlite_file import open_database, write_transaction
from tlspolicy.db.sqlite_thread import SqliteThread
from tlspolicy.errors import CacheError

# Bound parameters per statement; far below SQLITE_MAX_VARIABLE_NUMBER (32766 since 3.32).
SQL_BATCH = 500

logger = logging.getLogger("tlspolicy.cache")


OVERRIDES_SCHEMA = """
CREATE TABLE IF NOT EXISTS overrides (
    domain TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    keep_until REAL NOT NULL
)
"""


class SqliteBackend:
    """The ``sqlite`` backend.

    Args:
        path: the database file; missing parent directories are created with mode 0750.
        max_entries: the bound on stored entries.
        clock: seconds since the epoch; decides expiry.
        recover: move an unusable file aside and start empty (the server). False makes
            ``open`` raise ``CacheError`` instead (tools that must not touch the file).
    """

    name = "sqlite"
    shared = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_entries: int,
        clock: Callable[[], float] = time.time,
        recover: bool = True,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.path = Path(path)
        self._max_entries = max_entries
        self._clock = clock
        self._recover = recover
        self._thread = SqliteThread(str(self.path))
        self._commits = GroupCommit(
            self._put_batch,
            max_batch=SQL_BATCH,
            closed=lambda: CacheError(f"sqlite {self.path}: cache closed before the write"),
        )
        self._reads = GroupCommit(
            self.get_many,
            max_batch=SQL_BATCH,
            closed=lambda: CacheError(f"sqlite {self.path}: cache closed before the read"),
        )
        # Touched only in the worker thread:
        self._conn: sqlite3.Connection | None = None
        self._count = 0
        self._next_cleanup = 0.0
        self._data_version: int | None = None  # PRAGMA data_version as last seen

    # --- async API (event loop side) -------------------------------------------------

    async def open(self) -> None:
        self._thread.start()
        moved = await self._thread.run(self._open_sync, self._clock())
        if moved is not None:
            why, target = moved
            logger.warning(
                "cache file %s is unusable (%s); moved it to %s and started with an empty cache",
                self.path,
                why,
                target,
            )

    async def get(self, domain: str) -> CacheEntry | None:
        """With the other reads of this moment: one hand-off to the thread, one SELECT."""
        return (await self._reads.submit(domain)).get(domain)

    async def get_many(self, domains: Sequence[str]) -> dict[str, CacheEntry]:
        return await self._thread.run(self._get_sync, list(dict.fromkeys(domains)), self._clock())

    async def put(self, entry: CacheEntry) -> None:
        await self._commits.submit(entry)

    async def _put_batch(self, entries: list[CacheEntry]) -> None:
        await self._thread.run(self._put_sync, entries, self._clock())

    async def touch(self, usage: Mapping[str, tuple[float, int]]) -> None:
        if usage:
            await self._thread.run(self._touch_sync, dict(usage), self._clock())

    async def delete(self, domain: str) -> bool:
        return await self._thread.run(self._delete_sync, domain, self._clock())

    async def purge(self) -> int:
        return await self._thread.run(self._purge_sync)

    async def entries(self) -> list[CacheEntry]:
        return await self._thread.run(self._entries_sync, self._clock())

    async def count(self) -> int:
        return await self._thread.run(self._count_sync, self._clock())

    async def unchanged_elsewhere(self) -> bool:
        return await self._thread.run(self._unchanged_sync)

    async def aclose(self) -> None:
        if not self._thread.started:
            return
        await self._commits.idle()
        await self._reads.idle()
        try:
            await self._thread.run(self._close_sync)
        finally:
            self._thread.stop()

    # --- worker thread side --------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise CacheError(f"sqlite {self.path}: cache is not open")
        return self._conn

    def _open_sync(self, now: float) -> tuple[str, Path] | None:
        if self._conn is not None:
            self._conn.execute("SELECT 1").fetchall()  # the reconnect probe
            return None
        self._conn, moved = open_database(self.path, now, recover=self._recover)
        self._data_version = None  # a new connection: its counter starts afresh
        self._conn.execute(OVERRIDES_SCHEMA)
        self._count = self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        self._cleanup(now)
        return moved

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _unchanged_sync(self) -> bool:
        """``PRAGMA data_version`` changes when another connection commits to the file,
        never for this connection's own writes (sqlite.org/pragma.html#pragma_data_version)."""
        version = int(self._db().execute("PRAGMA data_version").fetchone()[0])
        unchanged = version == self._data_version
        self._data_version = version
        return unchanged

    def _get_sync(self, domains: list[str], now: float) -> dict[str, CacheEntry]:
        db = self._db()
        found: dict[str, CacheEntry] = {}
        for start in range(0, len(domains), SQL_BATCH):
            batch = domains[start : start + SQL_BATCH]
            marks = ",".join("?" * len(batch))
            rows = db.execute(
                f"SELECT domain, data, keep_until, used_at, hits FROM entries "
                f"WHERE domain IN ({marks}) AND keep_until >= ?",
                (*batch, now),
            ).fetchall()
            found.update(self._decode_rows(rows))
        return found

    def _decode_rows(self, rows: Iterable[tuple[Any, ...]]) -> dict[str, CacheEntry]:
        """Decode rows; undecodable ones are deleted (only if nobody rewrote them since)."""
        found: dict[str, CacheEntry] = {}
        garbage: list[tuple[Any, Any]] = []
        for domain, data, _keep_until, used_at, hits in rows:
            entry = decode_entry(data, domain) if isinstance(data, str | bytes) else None
            numeric = isinstance(used_at, int | float) and isinstance(hits, int)
            if entry is None or not numeric:
                garbage.append((domain, data))
                continue
            found[domain] = replace(entry, used_at=float(used_at), hits=hits)
        if garbage:
            removed = (
                self._db()
                .executemany("DELETE FROM entries WHERE domain = ? AND data IS ?", garbage)
                .rowcount
            )
            self._count -= max(removed, 0)
        return found

    def _put_sync(self, entries: list[CacheEntry], now: float) -> None:
        """Store ``entries`` in one transaction, in order (a later one for a domain wins)."""
        grown = 0
        with write_transaction(self._db()) as db:
            for entry in entries:
                grown += self._put_row(db, entry, now)
        self._count += grown
        if grown > 0 and self._count > self._max_entries:
            self._evict(now, keep=[entry.domain for entry in entries])
        elif now >= self._next_cleanup:
            self._cleanup(now)

    def _put_row(self, db: sqlite3.Connection, entry: CacheEntry, now: float) -> int:
        """Write one entry (usage counters merged); returns the change in the row count."""
        row = db.execute(
            "SELECT used_at, hits FROM entries WHERE domain = ?", (entry.domain,)
        ).fetchone()
        if row is not None and isinstance(row[0], int | float) and isinstance(row[1], int):
            entry = replace(entry, used_at=max(entry.used_at, row[0]), hits=max(entry.hits, row[1]))
        keep_until = entry.keep_until()
        if keep_until < now:
            db.execute("DELETE FROM entries WHERE domain = ?", (entry.domain,))
            return -1 if row is not None else 0
        db.execute(
            "INSERT OR REPLACE INTO entries (domain, data, keep_until, used_at, hits) "
            "VALUES (?, ?, ?, ?, ?)",
            (entry.domain, encode_entry(entry), keep_until, entry.used_at, entry.hits),
        )
        return 1 if row is None else 0

    def _touch_sync(self, usage: dict[str, tuple[float, int]], now: float) -> None:
        with write_transaction(self._db()) as db:
            db.executemany(
                "UPDATE entries SET hits = hits + ?, used_at = max(used_at, ?), "
                "keep_until = max(keep_until, ? + ?) WHERE domain = ? AND keep_until >= ?",
                [
                    (hits, used_at, used_at, RETAIN_AFTER_EXPIRY_S, domain, now)
                    for domain, (used_at, hits) in usage.items()
                ],
            )

    def _delete_sync(self, domain: str, now: float) -> bool:
        row = (
            self._db()
            .execute("DELETE FROM entries WHERE domain = ? RETURNING keep_until", (domain,))
            .fetchone()
        )
        if row is None:
            return False
        self._count -= 1
        return isinstance(row[0], int | float) and row[0] >= now

    def _purge_sync(self) -> int:
        removed = self._db().execute("DELETE FROM entries").rowcount
        self._count = 0
        return max(removed, 0)

    def _entries_sync(self, now: float) -> list[CacheEntry]:
        rows = (
            self._db()
            .execute(
                "SELECT domain, data, keep_until, used_at, hits FROM entries "
                "WHERE keep_until >= ? ORDER BY domain",
                (now,),
            )
            .fetchall()
        )
        return list(self._decode_rows(rows).values())

    def _count_sync(self, now: float) -> int:
        row = (
            self._db()
            .execute("SELECT COUNT(*) FROM entries WHERE keep_until >= ?", (now,))
            .fetchone()
        )
        return int(row[0])

    def _cleanup(self, now: float) -> None:
        db = self._db()
        self._next_cleanup = now + CLEANUP_INTERVAL_S
        db.execute("DELETE FROM entries WHERE keep_until < ?", (now,))
        db.execute("DELETE FROM leases WHERE expires_at <= ?", (now,))
        self._count = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def _evict(self, now: float, *, keep: list[str]) -> None:
        """Bring the row count under the bound after inserting ``keep`` (never victims)."""
        with write_transaction(self._db()) as db:
            self._cleanup(now)
            excess = self._count - self._max_entries
            if excess > 0:
                target = int(self._max_entries * EVICT_TO_FRACTION)
                marks = ", ".join("?" * len(keep))
                db.execute(
                    "DELETE FROM entries WHERE domain IN (SELECT domain FROM entries "
                    f"WHERE domain NOT IN ({marks}) ORDER BY used_at, domain LIMIT ?)",
                    (*keep, max(excess, self._count - target)),
                )
                self._count = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    async def put_override(self, domain: str, data: str, keep_until: float) -> None:
        await self._thread.run(self._put_override_sync, domain, data, keep_until, self._clock())

    async def overrides(self) -> dict[str, str]:
        return await self._thread.run(self._overrides_sync, self._clock())

    async def delete_override(self, domain: str) -> bool:
        return await self._thread.run(self._delete_override_sync, domain)

    def _put_override_sync(self, domain: str, data: str, keep_until: float, now: float) -> None:
        self._db().execute("DELETE FROM overrides WHERE keep_until < ?", (now,))
        self._db().execute(
            "INSERT OR REPLACE INTO overrides (domain, data, keep_until) VALUES (?, ?, ?)",
            (domain, data, keep_until),
        )

    def _overrides_sync(self, now: float) -> dict[str, str]:
        rows = self._db().execute(
            "SELECT domain, data FROM overrides WHERE keep_until >= ? ORDER BY domain", (now,)
        )
        return {str(domain): str(data) for domain, data in rows.fetchall()}

    def _delete_override_sync(self, domain: str) -> bool:
        cursor = self._db().execute("DELETE FROM overrides WHERE domain = ?", (domain,))
        return cursor.rowcount > 0

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        return await self._thread.run(self._acquire_sync, key, owner, ttl, self._clock())

    async def release_lease(self, key: str, owner: str) -> None:
        await self._thread.run(self._release_sync, key, owner)

    def _acquire_sync(self, key: str, owner: str, ttl: float, now: float) -> bool:
        row = (
            self._db()
            .execute(
                "INSERT INTO leases (key, owner, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, "
                "expires_at = excluded.expires_at "
                "WHERE leases.expires_at <= ? OR leases.owner = excluded.owner "
                "RETURNING owner",
                (key, owner, now + ttl, now),
            )
            .fetchone()
        )
        return row is not None

    def _release_sync(self, key: str, owner: str) -> None:
        self._db().execute("DELETE FROM leases WHERE key = ? AND owner = ?", (key, owner))
