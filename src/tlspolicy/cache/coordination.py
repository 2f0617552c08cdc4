"""The shared-cache protocol: merging one branch into an entry, and running a lookup once.

Several servers may share one Redis or PostgreSQL cache. ``Coordinator`` keeps them from
doing the same work twice and from overwriting each other:

* ``merge`` writes one branch (DANE or MTA-STS) into the stored entry and keeps the other
  branch as stored, under a per-domain lock, reading the shared store first rather than a
  possibly older in-process copy.
* ``run_once`` runs a lookup at most once across servers: the server that takes the lease
  checks the store once more (another server may have finished just before) and then looks
  up; the others wait, re-reading the store with growing pauses, until the result is there
  or ``wait`` runs out, and then look up themselves (availability over economy).
* ``exclusive`` is the no-wait form, for background work: whoever does not get the lease
  skips the work.

With a cache that is not shared, ``run_once`` just runs the lookup and ``exclusive`` always
grants. During a backend outage leases are granted (``PolicyCache.acquire_lease``): each
server then acts alone.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TypeVar

from tlspolicy.cache.domain_locks import DomainLocks, Turn
from tlspolicy.cache.entry import CacheEntry, DaneBranch
from tlspolicy.cache.store import PolicyCache
from tlspolicy.mtasts.state import StsState

T = TypeVar("T")

# A lookup another server holds the lease for is awaited this long, then done here.
LEASE_WAIT_S = 5.0
# Re-reads of the store while waiting start this far apart and double up to the maximum.
WAIT_STEP_MIN_S = 0.01
WAIT_STEP_MAX_S = 0.25


def owner_name() -> str:
    """A lease owner unique to this process: host, pid and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


class Coordinator:
    def __init__(
        self,
        cache: PolicyCache,
        *,
        owner: str | None = None,
        lease_ttl: float = 20.0,
        wait: float = LEASE_WAIT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.owner = owner or owner_name()
        self.lease_ttl = lease_ttl
        self.wait = wait
        self.clock = clock
        self._locks = DomainLocks()

    async def read(self, domain: str) -> CacheEntry | None:
        """The entry as stored now (the shared store, not an older in-process copy)."""
        return await (self.cache.get_fresh(domain) if self.cache.shared else self.cache.get(domain))

    async def merge(
        self, domain: str, *, dane: DaneBranch | None = None, sts: StsState | None = None
    ) -> CacheEntry:
        """Store one or both branches; a branch not given is kept as stored."""
        async with self.locked(domain):
            stored = await self.read(domain)
            entry = stored or CacheEntry(domain=domain, used_at=self.clock())
            if dane is not None:
                entry = replace(entry, dane=dane)
            if sts is not None:
                entry = replace(entry, sts=sts)
            await self.cache.put(entry)
        return entry

    def locked(self, domain: str) -> Turn:
        """Serialise read-modify-write of one domain within this process."""
        return self._locks.turn(domain)

    async def run_once(
        self,
        key: str,
        domain: str,
        lookup: Callable[[], Awaitable[T]],
        done: Callable[[CacheEntry | None], T | None],
    ) -> T:
        """``lookup()``, unless another server does it: then its stored result.

        Args:
            key: the lease name, e.g. ``lookup:dane:example.com``.
            domain: whose entry holds the result.
            lookup: does the work (and stores its result).
            done: what a stored entry offers as the result of this lookup, or None.
        """
        if not self.cache.shared:
            return await lookup()
        if await self.cache.acquire_lease(key, self.owner, self.lease_ttl):
            try:
                found = done(await self.cache.get_fresh(domain))
                return found if found is not None else await lookup()
            finally:
                await self.cache.release_lease(key, self.owner)
        deadline = time.monotonic() + self.wait
        step = WAIT_STEP_MIN_S
        while time.monotonic() < deadline:
            await asyncio.sleep(min(step, max(deadline - time.monotonic(), 0.0)))
            step = min(step * 2, WAIT_STEP_MAX_S)
            found = done(await self.cache.get_fresh(domain))
            if found is not None:
                return found
        return await lookup()

    @asynccontextmanager
    async def exclusive(self, key: str, ttl: float) -> AsyncIterator[bool]:
        """Yields True when this server holds ``key`` (always, without a shared cache)."""
        if not self.cache.shared:
            yield True
            return
        mine = await self.cache.acquire_lease(key, self.owner, ttl)
        try:
            yield mine
        finally:
            if mine:
                await self.cache.release_lease(key, self.owner)
