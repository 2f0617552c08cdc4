"""Overrides in PostgreSQL: the ``tlspolicy_overrides`` table (created with the others).

A mixin of ``PostgresBackend`` (kept apart to keep that module small). Expiry is decided
with our clock, as for entries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

OVERRIDES_SCHEMA = """
CREATE TABLE IF NOT EXISTS tlspolicy_overrides (
    domain text PRIMARY KEY,
    data text NOT NULL,
    keep_until double precision NOT NULL
);
"""
PG_OVERRIDE_TIMEOUT_S = 2.0

_PUT = """
INSERT INTO tlspolicy_overrides (domain, data, keep_until) VALUES ($1, $2, $3)
ON CONFLICT (domain) DO UPDATE SET data = EXCLUDED.data, keep_until = EXCLUDED.keep_until
"""


class PostgresOverrides:
    """Override storage; ``PostgresBackend`` provides the helpers declared here."""

    _clock: Callable[[], float]

    def _db(self) -> Any:  # pragma: no cover - PostgresBackend's
        raise NotImplementedError

    def _mapped_errors(
        self, limit_s: float
    ) -> contextlib.AbstractAsyncContextManager[None]:  # pragma: no cover
        raise NotImplementedError

    async def put_override(self, domain: str, data: str, keep_until: float) -> None:
        async with self._mapped_errors(PG_OVERRIDE_TIMEOUT_S):
            db = self._db()
            await db.execute("DELETE FROM tlspolicy_overrides WHERE keep_until < $1", self._clock())
            await db.execute(_PUT, domain, data, keep_until)

    async def overrides(self) -> dict[str, str]:
        async with self._mapped_errors(PG_OVERRIDE_TIMEOUT_S):
            rows = await self._db().fetch(
                "SELECT domain, data FROM tlspolicy_overrides WHERE keep_until >= $1 "
                "ORDER BY domain",
                self._clock(),
            )
        return {str(row["domain"]): str(row["data"]) for row in rows}

    async def delete_override(self, domain: str) -> bool:
        async with self._mapped_errors(PG_OVERRIDE_TIMEOUT_S):
            status = await self._db().execute(
                "DELETE FROM tlspolicy_overrides WHERE domain = $1", domain
            )
        return str(status).rsplit(" ", 1)[-1] != "0"
