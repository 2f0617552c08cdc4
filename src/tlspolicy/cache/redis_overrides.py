"""Overrides in Redis: one hash ``tlspolicy:overrides``, field = domain, value =
``<keep_until>\\n<override JSON>``.

One hash, not a key per domain: every server re-reads all overrides every ``cache.hot_ttl``,
and ``HGETALL`` is one round trip where a ``SCAN`` would walk every cache entry. Redis has
no portable per-field expiry, so reads compare ``keep_until`` with our clock (as for
entries) and writes drop the fields that are past it. A mixin of ``RedisBackend``; entry
scans and purges use the ``tlspolicy:e:`` prefix and never touch this hash.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

from redis.asyncio import Redis

OVERRIDES_KEY = b"tlspolicy:overrides"


def _parse(value: bytes) -> tuple[float, str] | None:
    head, sep, data = value.decode("utf-8", "replace").partition("\n")
    try:
        keep_until = float(head)
    except ValueError:
        return None
    return (keep_until, data) if sep and not math.isnan(keep_until) else None


class RedisOverrides:
    """Override storage; ``RedisBackend`` provides the helpers declared here."""

    _clock: Callable[[], float]

    def _redis(self) -> Redis:  # pragma: no cover - RedisBackend's
        raise NotImplementedError

    def _mapped_errors(self) -> contextlib.AbstractContextManager[None]:  # pragma: no cover
        raise NotImplementedError

    async def put_override(self, domain: str, data: str, keep_until: float) -> None:
        now = self._clock()
        with self._mapped_errors():
            stored = await self._all()
            stale = [d for d, (keep, _) in stored.items() if keep < now and d != domain]
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.hset(OVERRIDES_KEY, domain, f"{keep_until!r}\n{data}")
                if stale:
                    pipe.hdel(OVERRIDES_KEY, *stale)
                await pipe.execute()

    async def overrides(self) -> dict[str, str]:
        now = self._clock()
        with self._mapped_errors():
            stored = await self._all()
        return {d: data for d, (keep, data) in sorted(stored.items()) if keep >= now}

    async def delete_override(self, domain: str) -> bool:
        with self._mapped_errors():
            return bool(await self._redis().hdel(OVERRIDES_KEY, domain))

    async def _all(self) -> dict[str, tuple[float, str]]:
        """Every field, parsed; ``put_override`` uses the past ones to delete them."""
        raw = await self._redis().hgetall(OVERRIDES_KEY)
        found: dict[str, tuple[float, str]] = {}
        for field, value in raw.items():
            parsed = _parse(value) if isinstance(value, bytes) else None
            if parsed is not None and isinstance(field, bytes):
                found[field.decode("utf-8", "surrogateescape")] = parsed
        return found
