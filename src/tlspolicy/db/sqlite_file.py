"""The sqlite cache file itself: creating it, checking it is ours, moving a bad one aside.

The cache only saves lookups, so losing it is cheap and refusing to start is not: a file
that is not a database, fails ``PRAGMA integrity_check`` or has a schema this version does
not know is renamed ``<path>.corrupt-<UTC timestamp>`` (with its ``-wal``/``-shm``) and an
empty cache is created. Nothing is written before the file is known to be ours, so what is
moved aside is byte-for-byte what was found. Called from the backend's worker thread only.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from tlspolicy.errors import CacheError
from tlspolicy.files import create_private

SCHEMA_VERSION = 1  # PRAGMA user_version of files this code writes
# How long a statement waits for another process's write lock, in seconds. The admin CLI
# holds it for milliseconds; anything longer is an outage, not a wait.
SQLITE_BUSY_TIMEOUT_S = 2.0
WAL_RETRY_S = 0.01  # between attempts to switch a file to WAL while another process does
DIR_MODE = 0o750  # a new parent directory: the server's user and group only
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


class UnusableFileError(Exception):
    """The file exists but is not a cache this version can use; ``str()`` says why."""


@contextlib.contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
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


def open_database(
    path: Path, now: float, *, recover: bool
) -> tuple[sqlite3.Connection, tuple[str, Path] | None]:
    """Connect to the cache at ``path``, creating it (and its parents) if missing.

    Returns:
        the connection, and ``(why, where)`` when an unusable file was moved aside.

    Raises:
        CacheError: the file is unusable and ``recover`` is False (it is left alone).
        sqlite3.Error, OSError: the backend maps these (busy, unwritable location).
    """
    make_parent(path)
    create_private(path)  # 0600 before SQLite creates it 0644 (tlspolicy.files)
    try:
        return connect_checked(path), None
    except UnusableFileError as exc:
        if not recover:
            raise CacheError(f"sqlite {path}: unusable cache file: {exc}") from None
        moved = (str(exc), move_aside(path, now))
        return connect_checked(path), moved


def make_parent(path: Path) -> None:
    """Create the missing parent directories of ``path`` with ``DIR_MODE``."""
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        directory.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered by the umask


def connect_checked(path: Path) -> sqlite3.Connection:
    """A connection to a checked (or newly created) cache file, in WAL mode.

    Raises:
        UnusableFileError: the file is not a cache this version can use.
    """
    conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        _check_or_create(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise  # busy, not broken: an outage the caller retries
        raise UnusableFileError(str(exc)) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _check_or_create(conn: sqlite3.Connection) -> None:
    """Validate the file (or create our schema in an empty one), then switch to WAL."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]  # "not a database" here
    if version == 0:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
        if tables:
            raise UnusableFileError(f"foreign database (tables {', '.join(sorted(tables))})")
        _set_modes(conn)
        with write_transaction(conn):
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:  # lost no race
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
        return
    if version != SCHEMA_VERSION:
        raise UnusableFileError(f"schema version {version}, expected {SCHEMA_VERSION}")
    problems = [row[0] for row in conn.execute("PRAGMA integrity_check(5)")]
    if problems != ["ok"]:
        raise UnusableFileError("integrity check failed: " + "; ".join(problems))
    columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(entries)"))
    if columns != ENTRY_COLUMNS:
        raise UnusableFileError(f"unexpected entries columns {columns}")
    _set_modes(conn)


def _set_modes(conn: sqlite3.Connection) -> None:
    set_wal(conn, SQLITE_BUSY_TIMEOUT_S)


def set_wal(conn: sqlite3.Connection, timeout_s: float) -> None:
    """WAL journal with ``synchronous=NORMAL``, waiting up to ``timeout_s`` for the lock.

    Switching to WAL takes an exclusive lock, and SQLite answers "database is locked" at
    once instead of calling the busy handler: two processes opening the same new file at
    the same moment (``server.workers``) failed one start in three. So the switch waits for
    the lock here, as every other statement does through the connection's timeout.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(WAL_RETRY_S)
    conn.execute("PRAGMA synchronous=NORMAL")


def move_aside(path: Path, now: float) -> Path:
    """Rename ``path`` (and its ``-wal``/``-shm``) to a fresh ``.corrupt-<stamp>`` name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    serial = 0
    while target.exists():
        serial += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}.{serial}")
    for suffix in ("-wal", "-shm"):  # a stale WAL must never meet the new file
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    path.rename(target)
    return target
