"""Leases in the sqlite cache file: the ``leases`` table, used from the worker thread.

A mixin of ``SqliteBackend`` (kept apart to keep that module small). A lease is taken when
it is free, expired or already ours (one ``INSERT ... ON CONFLICT`` statement, so two
processes on one file cannot both win it).
"""

from __future__ import annotations

from tlspolicy.cache.sqlite_part import SqlitePart


class SqliteLeases(SqlitePart):
    """Lease storage; ``SqliteBackend`` provides ``_thread``, ``_clock`` and ``_db``."""

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
