"""The default cache backend: one SQLite file, used from one dedicated worker thread.

Rules kept here:

* Every use of the connection happens in the single worker thread (``_run``), so the event
  loop never blocks on disk and sqlite3's same-thread check always holds.
* ``journal_mode=WAL`` + ``synchronous=NORMAL``: a crash or ``kill -9`` may lose the last
  transactions but never leaves a broken file, and other processes (the admin CLI) can read
  and write the same file while the server runs; ``busy_timeout`` covers their short locks.
* A file that is not a database, fails ``PRAGMA integrity_check`` or has a schema this
  version does not know is renamed aside (``<path>.corrupt-<UTC timestamp>``, with its
  ``-wal``/``-shm``) with a WARNING, and the cache starts empty. The cache only saves
  lookups, so losing it is cheap; refusing to start is not.
* Bounded by ``max_entries``: an insert over the bound deletes expired rows, then the least
  recently used (smallest ``used_at``) down to ``EVICT_TO_FRACTION`` of the bound. Expired
  rows are also deleted every ``CLEANUP_INTERVAL_S`` as a side effect of writes.
* Every ``sqlite3`` or OS error becomes ``CacheError`` in ``_run``, nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from tlspolicy.cache.backend import (
    CLEANUP_INTERVAL_S,
    EVICT_TO_FRACTION,
    decode_entry,
    encode_entry,
)
from tlspolicy.cache.entry import RETAIN_AFTER_EXPIRY_S, CacheEntry
from tlspolicy.errors import CacheError

T = TypeVar("T")

SCHEMA_VERSION = 1  # PRAGMA user_version of files this code writes
# How long a statement waits for another process's write lock, in seconds. The admin CLI
# holds it for milliseconds; anything longer is an outage, not a wait.
SQLITE_BUSY_TIMEOUT_S = 2.0
DIR_MODE = 0o750  # a new parent directory: the server's user and group only
# Bound parameters per statement; far below SQLITE_MAX_VARIABLE_NUMBER (32766 since 3.32).
SQL_BATCH = 500
ENTRY_COLUMNS = ("domain", "data", "keep_until", "used_at", "hits")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS entries (
    domain TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    keep_until REAL NOT NULL,
    used_at REAL NOT NULL,
    hits INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_keep_until ON entries (keep_until);
CREATE INDEX IF NOT EXISTS entries_used_at ON entries (used_at);
CREATE TABLE IF NOT EXISTS leases (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
);
PRAGMA user_version = {SCHEMA_VERSION};
"""

logger = logging.getLogger("tlspolicy.cache")


class _UnusableFileError(Exception):
    """The file exists but is not a cache this version can use; ``str()`` says why."""


@contextlib.contextmanager
def _write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the connection autocommits)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


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
        self._executor: ThreadPoolExecutor | None = None
        # Touched only in the worker thread:
        self._conn: sqlite3.Connection | None = None
        self._count = 0
        self._next_cleanup = 0.0

    # --- async API (event loop side) -------------------------------------------------

    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="tlspolicy-sqlite")
        moved = await self._run(self._open_sync, self._clock())
        if moved is not None:
            why, target = moved
            logger.warning(
                "cache file %s is unusable (%s); moved it to %s and started with an empty cache",
                self.path,
                why,
                target,
            )

    async def get(self, domain: str) -> CacheEntry | None:
        return (await self._run(self._get_sync, [domain], self._clock())).get(domain)

    async def get_many(self, domains: Sequence[str]) -> dict[str, CacheEntry]:
        return await self._run(self._get_sync, list(dict.fromkeys(domains)), self._clock())

    async def put(self, entry: CacheEntry) -> None:
        await self._run(self._put_sync, entry, self._clock())

    async def touch(self, usage: Mapping[str, tuple[float, int]]) -> None:
        if usage:
            await self._run(self._touch_sync, dict(usage), self._clock())

    async def delete(self, domain: str) -> bool:
        return await self._run(self._delete_sync, domain, self._clock())

    async def purge(self) -> int:
        return await self._run(self._purge_sync)

    async def entries(self) -> list[CacheEntry]:
        return await self._run(self._entries_sync, self._clock())

    async def count(self) -> int:
        return await self._run(self._count_sync, self._clock())

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        return await self._run(self._acquire_sync, key, owner, ttl, self._clock())

    async def release_lease(self, key: str, owner: str) -> None:
        await self._run(self._release_sync, key, owner)

    async def aclose(self) -> None:
        if self._executor is None:
            return
        try:
            await self._run(self._close_sync)
        finally:
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=False)

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` in the worker thread; the one place sqlite/OS errors are mapped."""
        if self._executor is None:
            raise CacheError(f"sqlite {self.path}: cache is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(func, *args))
        except sqlite3.Error as exc:
            raise CacheError(f"sqlite {self.path}: {exc}") from exc
        except OSError as exc:
            raise CacheError(f"sqlite {self.path}: {exc.strerror or exc}") from exc
        except RuntimeError as exc:  # executor shut down by a concurrent aclose()
            raise CacheError(f"sqlite {self.path}: {exc}") from exc

    # --- worker thread side --------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise CacheError(f"sqlite {self.path}: cache is not open")
        return self._conn

    def _open_sync(self, now: float) -> tuple[str, Path] | None:
        if self._conn is not None:
            self._conn.execute("SELECT 1").fetchall()  # the reconnect probe
            return None
        self._make_parent()
        moved: tuple[str, Path] | None = None
        try:
            self._conn = self._connect_checked()
        except _UnusableFileError as exc:
            if not self._recover:
                raise CacheError(f"sqlite {self.path}: unusable cache file: {exc}") from None
            moved = (str(exc), self._move_aside(now))
            self._conn = self._connect_checked()
        self._count = self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        self._cleanup(now)
        return moved

    def _make_parent(self) -> None:
        missing: list[Path] = []
        parent = self.path.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for directory in reversed(missing):
            directory.mkdir(mode=DIR_MODE, exist_ok=True)
            os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered by the umask

    def _connect_checked(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            self._check_or_create(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise  # busy, not broken: an outage the caller retries
            raise _UnusableFileError(str(exc)) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_or_create(self, conn: sqlite3.Connection) -> None:
        """Validate the file (or create our schema in an empty one), then switch to WAL.

        Nothing is written before the file is known to be ours, so a file that is moved
        aside is byte-for-byte what was found.
        """
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # "not a database" here
        if version == 0:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
            if tables:
                raise _UnusableFileError(f"foreign database (tables {', '.join(sorted(tables))})")
            self._set_modes(conn)
            with _write_transaction(conn):
                if conn.execute("PRAGMA user_version").fetchone()[0] == 0:  # lost no race
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
            return
        if version != SCHEMA_VERSION:
            raise _UnusableFileError(f"schema version {version}, expected {SCHEMA_VERSION}")
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check(5)")]
        if problems != ["ok"]:
            raise _UnusableFileError("integrity check failed: " + "; ".join(problems))
        columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(entries)"))
        if columns != ENTRY_COLUMNS:
            raise _UnusableFileError(f"unexpected entries columns {columns}")
        self._set_modes(conn)

    @staticmethod
    def _set_modes(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        conn.execute("PRAGMA synchronous=NORMAL")

    def _move_aside(self, now: float) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        serial = 0
        while target.exists():
            serial += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}.{serial}")
        for suffix in ("-wal", "-shm"):  # a stale WAL must never meet the new file
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.rename(target.with_name(target.name + suffix))
        self.path.rename(target)
        return target

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

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

    def _put_sync(self, entry: CacheEntry, now: float) -> None:
        with _write_transaction(self._db()) as db:
            row = db.execute(
                "SELECT used_at, hits FROM entries WHERE domain = ?", (entry.domain,)
            ).fetchone()
            if row is not None and isinstance(row[0], int | float) and isinstance(row[1], int):
                entry = replace(
                    entry, used_at=max(entry.used_at, row[0]), hits=max(entry.hits, row[1])
                )
            keep_until = entry.keep_until()
            if keep_until < now:
                db.execute("DELETE FROM entries WHERE domain = ?", (entry.domain,))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO entries (domain, data, keep_until, used_at, hits) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (entry.domain, encode_entry(entry), keep_until, entry.used_at, entry.hits),
                )
        if keep_until < now:
            if row is not None:
                self._count -= 1
        elif row is None:
            self._count += 1
            if self._count > self._max_entries:
                self._evict(now, keep=entry.domain)
                return
        if now >= self._next_cleanup:
            self._cleanup(now)

    def _touch_sync(self, usage: dict[str, tuple[float, int]], now: float) -> None:
        with _write_transaction(self._db()) as db:
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

    def _cleanup(self, now: float) -> None:
        db = self._db()
        self._next_cleanup = now + CLEANUP_INTERVAL_S
        db.execute("DELETE FROM entries WHERE keep_until < ?", (now,))
        db.execute("DELETE FROM leases WHERE expires_at <= ?", (now,))
        self._count = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def _evict(self, now: float, *, keep: str) -> None:
        """Bring the row count under the bound after inserting ``keep`` (never a victim)."""
        with _write_transaction(self._db()) as db:
            self._cleanup(now)
            excess = self._count - self._max_entries
            if excess > 0:
                target = int(self._max_entries * EVICT_TO_FRACTION)
                db.execute(
                    "DELETE FROM entries WHERE domain IN (SELECT domain FROM entries "
                    "WHERE domain != ? ORDER BY used_at, domain LIMIT ?)",
                    (keep, max(excess, self._count - target)),
                )
                self._count = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
