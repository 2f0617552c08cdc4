"""The admin and lease calls of ``PolicyCache`` (``cache.store``), kept in their own module.

Admin calls (``delete``, ``purge``, ``entries``, ``count``) raise ``CacheError`` when the
backend is unavailable, so a command never reports success it did not have; leases never
raise: during an outage each server acts alone (``cache.coordination``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tlspolicy.cache.backend import CacheBackend
from tlspolicy.cache.domain_locks import DomainLocks
from tlspolicy.cache.entry import CacheEntry
from tlspolicy.cache.hot import HotLayer, OvertakenReads
from tlspolicy.cache.outage import Outage
from tlspolicy.cache.usage import PendingUses
from tlspolicy.errors import CacheError

T = TypeVar("T")


class AdminCalls:
    """Declares what ``PolicyCache`` provides; holds no state of its own."""

    _backend: CacheBackend
    _hot: HotLayer
    _uses: PendingUses
    _overtaken: OvertakenReads
    _write_order: DomainLocks
    _outage: Outage

    async def flush(self) -> None:  # pragma: no cover - PolicyCache's
        raise NotImplementedError

    async def _ready(self) -> bool:  # pragma: no cover - PolicyCache's
        raise NotImplementedError

    def _fail(self, exc: CacheError) -> None:  # pragma: no cover - PolicyCache's
        raise NotImplementedError

    # --- leases ----------------------------------------------------------------------

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        """Take the lease; during an outage answer True (act alone rather than wait)."""
        if not await self._ready():
            return True
        try:
            return await self._backend.acquire_lease(key, owner, ttl)
        except CacheError as exc:
            self._fail(exc)
            return True

    async def release_lease(self, key: str, owner: str) -> None:
        if not await self._ready():
            return
        try:
            await self._backend.release_lease(key, owner)
        except CacheError as exc:
            self._fail(exc)

    # --- admin -----------------------------------------------------------------------

    async def delete(self, domain: str) -> bool:
        """Forget ``domain`` here and in the backend; True if the backend had it live.

        Raises:
            CacheError: the backend is unavailable (the hot copy is gone anyway).
        """
        self._overtaken.wrote(domain)
        self._hot.forget(domain)
        self._uses.discard(domain)
        async with self._write_order.turn(domain):
            return await self._admin(lambda: self._backend.delete(domain))

    async def purge(self) -> int:
        """Forget everything; returns how many stored entries the backend removed.

        Raises:
            CacheError: the backend is unavailable (the hot layer is cleared anyway).
        """
        self._overtaken.purged()
        self._hot.clear()
        self._uses.clear()
        return await self._admin(self._backend.purge)

    async def entries(self) -> list[CacheEntry]:
        """Every live stored entry, sorted by domain, with counters flushed first.

        Raises:
            CacheError: the backend is unavailable.
        """
        await self.flush()
        return await self._admin(self._backend.entries)

    async def count(self) -> int:
        """How many live entries the backend holds.

        Raises:
            CacheError: the backend is unavailable.
        """
        return await self._admin(self._backend.count)

    # --- internals ---------------------------------------------------------------------

    async def _admin(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run an admin call; unlike the hot path it raises when the backend is down."""
        if not await self._ready():
            reason = self._outage.reason
            raise CacheError(f"cache backend {self._backend.name} unavailable: {reason}")
        try:
            return await call()
        except CacheError as exc:
            self._fail(exc)
            raise
