"""Overrides in the sqlite cache file: the ``overrides`` table, used from the worker thread.

A mixin of ``SqliteBackend`` (kept apart to keep that module small). The table is created
on open in files of this schema version that predate it (``CREATE TABLE IF NOT EXISTS``),
so no version bump and no file moved aside.
"""

from __future__ import annotations

from tlspolicy.cache.sqlite_part import SqlitePart

OVERRIDES_SCHEMA = """
CREATE TABLE IF NOT EXISTS overrides (
    domain TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    keep_until REAL NOT NULL
)
"""


class SqliteOverrides(SqlitePart):
    """Override storage; ``SqliteBackend`` provides ``_thread``, ``_clock`` and ``_db``."""

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
