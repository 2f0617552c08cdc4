"""Overrides in Redis: ``tlspolicy:o:<domain>`` hashes (``data``, ``keep_until``).

``PEXPIREAT`` keep_until bounds the key's life; reads also compare ``keep_until`` with our
clock, as for entries, so a lagging server clock never revives an override.

A mixin of ``RedisBackend`` (kept apart to keep that module small). Entry scans and purges
use the ``tlspolicy:e:`` prefix, so they never touch overrides.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable

from redis.asyncio import Redis

OVERRIDE_PREFIX = b"tlspolicy:o:"


def _override_key(domain: str) -> bytes:
    return OVERRIDE_PREFIX + domain.encode("utf-8", "surrogateescape")


class RedisOverrides:
    """Override storage; ``RedisBackend`` provides the helpers declared here."""

    _clock: Callable[[], float]

    def _redis(self) -> Redis:  # pragma: no cover - RedisBackend's
        raise NotImplementedError

    def _mapped_errors(self) -> contextlib.AbstractContextManager[None]:  # pragma: no cover
        raise NotImplementedError

    def _scan(self, prefix: bytes) -> AsyncIterator[list[bytes]]:  # pragma: no cover
        raise NotImplementedError

    async def put_override(self, domain: str, data: str, keep_until: float) -> None:
        key = _override_key(domain)
        with self._mapped_errors():
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(key, mapping={"data": data, "keep_until": repr(keep_until)})
                if math.isfinite(keep_until):
                    pipe.pexpireat(key, max(1, math.ceil(keep_until * 1000)))
                await pipe.execute()

    async def overrides(self) -> dict[str, str]:
        found: dict[str, str] = {}
        now = self._clock()
        with self._mapped_errors():
            async for batch in self._scan(OVERRIDE_PREFIX):
                async with self._redis().pipeline(transaction=False) as pipe:
                    for key in batch:
                        pipe.hmget(key, ["data", "keep_until"])
                    replies = await pipe.execute(raise_on_error=False)
                for key, reply in zip(batch, replies, strict=True):
                    if isinstance(reply, Exception) or not isinstance(reply[0], bytes):
                        continue  # not ours (WRONGTYPE) or gone meanwhile
                    try:
                        keep_until = float(reply[1])
                    except (TypeError, ValueError):
                        continue
                    if keep_until >= now:
                        domain = key[len(OVERRIDE_PREFIX) :].decode("utf-8", "surrogateescape")
                        found[domain] = reply[0].decode("utf-8", "replace")
        return dict(sorted(found.items()))

    async def delete_override(self, domain: str) -> bool:
        with self._mapped_errors():
            return bool(await self._redis().delete(_override_key(domain)))
