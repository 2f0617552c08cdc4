"""What the parts of ``SqliteBackend`` kept in their own modules (leases, overrides) use.

``SqliteBackend`` provides the worker thread, the clock and the connection; a part only
declares them, so that each module stays small and type-checks on its own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from tlspolicy.cache.sqlite_thread import SqliteThread


class SqlitePart:
    _thread: SqliteThread
    _clock: Callable[[], float]

    def _db(self) -> sqlite3.Connection:  # pragma: no cover - SqliteBackend's
        raise NotImplementedError
