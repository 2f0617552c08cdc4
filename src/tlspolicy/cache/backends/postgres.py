"""A shared cache backend on PostgreSQL (asyncpg pool), for several servers at once.

Rules kept here:

* Tables ``tlspolicy_entries``, ``tlspolicy_leases`` and ``tlspolicy_overrides``
  (prefixed: the database may be shared with other applications) are created if missing,
  under an advisory lock so that servers starting together do not race. ``data`` is
  ``text``, not ``jsonb``: jsonb reorders keys (postfix-mta-sts-resolver with postgres,
  docs/protocol-notes.md §7.4).
* Expiry is decided with our clock, passed as a parameter: rows past ``keep_until`` are never
  returned or counted, and are deleted every ``CLEANUP_INTERVAL_S`` as a side effect of
  writes. Counter merges and lease takeover are single atomic upserts.
* Every operation runs under ``PG_OP_TIMEOUT_S`` (admin listings ``PG_ADMIN_TIMEOUT_S``), so
  an unreachable server is noticed fast; every asyncpg or OS error becomes ``CacheError`` in
  ``_mapped_errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import asyncpg

from tlspolicy.cache.backend import CLEANUP_INTERVAL_S, decode_entry, encode_entry
from tlspolicy.cache.entry import RETAIN_AFTER_EXPIRY_S, CacheEntry
from tlspolicy.db.pgerrors import mapped_errors
from tlspolicy.errors import CacheError

PG_CONNECT_TIMEOUT_S = 2.0  # establishing one connection
PG_OP_TIMEOUT_S = 2.0  # one hot-path operation, pool wait and reconnect included
PG_ADMIN_TIMEOUT_S = 60.0  # listings and purges of the whole table
PG_POOL_MAX = 4  # the service's cache traffic is a trickle behind the hot layer
SCHEMA_LOCK_ID = 0x746C7370  # pg_advisory_xact_lock key for schema creation ("tlsp")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tlspolicy_entries (
    domain text PRIMARY KEY,
    data text NOT NULL,
    keep_until double precision NOT NULL,
    used_at double precision NOT NULL,
    hits bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS tlspolicy_entries_keep_until ON tlspolicy_entries (keep_until);
CREATE TABLE IF NOT EXISTS tlspolicy_leases (
    key text PRIMARY KEY,
    owner text NOT NULL,
    expires_at double precision NOT NULL
);
"""

_SELECT = "SELECT domain, data, keep_until, used_at, hits FROM tlspolicy_entries"

_PUT = """
INSERT INTO tlspolicy_entries AS e (domain, data, keep_until, used_at, hits)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (domain) DO UPDATE SET
    data = EXCLUDED.data,
    used_at = GREATEST(e.used_at, EXCLUDED.used_at),
    hits = GREATEST(e.hits, EXCLUDED.hits),
    keep_until = GREATEST(EXCLUDED.keep_until, GREATEST(e.used_at, EXCLUDED.used_at) + $6)
RETURNING keep_until
"""

_TOUCH = """
UPDATE tlspolicy_entries AS e SET
    hits = e.hits + u.hits,
    used_at = GREATEST(e.used_at, u.used_at),
    keep_until = GREATEST(e.keep_until, u.used_at + $4)
FROM unnest($1::text[], $2::float8[], $3::bigint[]) AS u(domain, used_at, hits)
WHERE e.domain = u.domain AND e.keep_until >= $5
"""

_ACQUIRE = """
INSERT INTO tlspolicy_leases AS l (key, owner, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
WHERE l.expires_at <= $4 OR l.owner = EXCLUDED.owner
RETURNING owner
"""


OVERRIDES_SCHEMA = """
CREATE TABLE IF NOT EXISTS tlspolicy_overrides (
    domain text PRIMARY KEY,
    data text NOT NULL,
    keep_until double precision NOT NULL
);
"""

PG_OVERRIDE_TIMEOUT_S = 2.0

_PUT_OVERRIDE = """
INSERT INTO tlspolicy_overrides (domain, data, keep_until) VALUES ($1, $2, $3)
ON CONFLICT (domain) DO UPDATE SET data = EXCLUDED.data, keep_until = EXCLUDED.keep_until
"""


class PostgresBackend:
    """The ``postgres`` backend. ``url`` is a libpq-style ``postgresql://`` URL."""

    name = "postgres"
    shared = True

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self._url = url
        self._clock = clock
        self._pool: Any = None  # asyncpg.Pool (untyped)
        self._schema_ready = False
        self._next_cleanup = 0.0

    async def open(self) -> None:
        async with self._mapped_errors(PG_OP_TIMEOUT_S + PG_CONNECT_TIMEOUT_S):
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._url,
                    min_size=1,
                    max_size=PG_POOL_MAX,
                    timeout=PG_CONNECT_TIMEOUT_S,
                    command_timeout=PG_OP_TIMEOUT_S,
                )
            if self._schema_ready:  # a reconnect probe: connections may predate a restart
                await self._pool.expire_connections()
                await self._pool.fetchval("SELECT 1")
                return
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK_ID)
                await conn.execute(_SCHEMA + OVERRIDES_SCHEMA)
            self._schema_ready = True

    async def get(self, domain: str) -> CacheEntry | None:
        return (await self.get_many([domain])).get(domain)

    async def get_many(self, domains: Sequence[str]) -> dict[str, CacheEntry]:
        now = self._clock()
        async with self._mapped_errors(PG_OP_TIMEOUT_S):
            rows = await self._db().fetch(
                f"{_SELECT} WHERE domain = ANY($1::text[]) AND keep_until >= $2",
                list(dict.fromkeys(domains)),
                now,
            )
            return await self._decode_rows(rows)

    async def put(self, entry: CacheEntry) -> None:
        now = self._clock()
        async with self._mapped_errors(PG_OP_TIMEOUT_S):
            db = self._db()
            keep_until = await db.fetchval(
                _PUT,
                entry.domain,
                encode_entry(entry),
                entry.keep_until(),
                entry.used_at,
                entry.hits,
                RETAIN_AFTER_EXPIRY_S,
            )
            if keep_until < now:
                await db.execute(
                    "DELETE FROM tlspolicy_entries WHERE domain = $1 AND keep_until < $2",
                    entry.domain,
                    now,
                )
            if now >= self._next_cleanup:
                self._next_cleanup = now + CLEANUP_INTERVAL_S
                await db.execute("DELETE FROM tlspolicy_entries WHERE keep_until < $1", now)
                await db.execute("DELETE FROM tlspolicy_leases WHERE expires_at <= $1", now)

    async def touch(self, usage: Mapping[str, tuple[float, int]]) -> None:
        if not usage:
            return
        domains = list(usage)
        async with self._mapped_errors(PG_OP_TIMEOUT_S):
            await self._db().execute(
                _TOUCH,
                domains,
                [float(usage[d][0]) for d in domains],
                [int(usage[d][1]) for d in domains],
                RETAIN_AFTER_EXPIRY_S,
                self._clock(),
            )

    async def delete(self, domain: str) -> bool:
        async with self._mapped_errors(PG_OP_TIMEOUT_S):
            keep_until = await self._db().fetchval(
                "DELETE FROM tlspolicy_entries WHERE domain = $1 RETURNING keep_until", domain
            )
        return keep_until is not None and keep_until >= self._clock()

    async def purge(self) -> int:
        async with self._mapped_errors(PG_ADMIN_TIMEOUT_S):
            status = await self._db().execute(
                "DELETE FROM tlspolicy_entries", timeout=PG_ADMIN_TIMEOUT_S
            )
        return int(str(status).rsplit(" ", 1)[-1])  # "DELETE <n>"

    async def entries(self) -> list[CacheEntry]:
        async with self._mapped_errors(PG_ADMIN_TIMEOUT_S):
            rows = await self._db().fetch(
                f"{_SELECT} WHERE keep_until >= $1 ORDER BY domain",
                self._clock(),
                timeout=PG_ADMIN_TIMEOUT_S,
            )
            found = await self._decode_rows(rows)
        return list(found.values())

    async def count(self) -> int:
        async with self._mapped_errors(PG_ADMIN_TIMEOUT_S):
            found = await self._db().fetchval(
                "SELECT count(*) FROM tlspolicy_entries WHERE keep_until >= $1",
                self._clock(),
                timeout=PG_ADMIN_TIMEOUT_S,
            )
        return int(found)

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        now = self._clock()
        async with self._mapped_errors(PG_OP_TIMEOUT_S):
            holder = await self._db().fetchval(_ACQUIRE, key, owner, now + ttl, now)
        return holder is not None

    async def release_lease(self, key: str, owner: str) -> None:
        async with self._mapped_errors(PG_OP_TIMEOUT_S):
            await self._db().execute(
                "DELETE FROM tlspolicy_leases WHERE key = $1 AND owner = $2", key, owner
            )

    async def unchanged_elsewhere(self) -> bool:
        return False  # shared: other servers write all the time; copies are re-read instead

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        self._schema_ready = False
        if pool is None:
            return
        try:
            async with asyncio.timeout(PG_OP_TIMEOUT_S):
                await pool.close()
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pool.terminate()  # the server is gone: drop the connections without goodbye

    # --- helpers ---------------------------------------------------------------------

    def _mapped_errors(self, limit_s: float) -> contextlib.AbstractAsyncContextManager[None]:
        """Bound the block by ``limit_s`` and turn asyncpg/OS errors into ``CacheError``."""
        return mapped_errors(limit_s, CacheError)

    def _db(self) -> Any:
        if self._pool is None or not self._schema_ready:
            raise CacheError("postgres: cache is not open")
        return self._pool

    async def _decode_rows(self, rows: Sequence[Any]) -> dict[str, CacheEntry]:
        """Decode rows; undecodable ones are deleted (only if nobody rewrote them since)."""
        found: dict[str, CacheEntry] = {}
        for row in rows:
            entry = decode_entry(row["data"], row["domain"])
            if entry is None:
                await self._db().execute(
                    "DELETE FROM tlspolicy_entries WHERE domain = $1 AND data = $2",
                    row["domain"],
                    row["data"],
                )
                continue
            found[row["domain"]] = replace(entry, used_at=row["used_at"], hits=row["hits"])
        return found

    async def put_override(self, domain: str, data: str, keep_until: float) -> None:
        async with self._mapped_errors(PG_OVERRIDE_TIMEOUT_S):
            db = self._db()
            await db.execute("DELETE FROM tlspolicy_overrides WHERE keep_until < $1", self._clock())
            await db.execute(_PUT_OVERRIDE, domain, data, keep_until)

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
