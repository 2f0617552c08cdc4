"""A process-local cache backend: a dict of entries, bounded by ``max_entries``.

Nothing survives a restart. Entries are kept as decoded ``CacheEntry`` values (no JSON round
trip). Eviction when an insert pushes the size over ``max_entries``:

1. every expired entry goes first;
2. if that is not enough, the least recently used entries (smallest ``used_at``, ties by
   domain; the entry just stored is spared) go, down to ``EVICT_TO_FRACTION`` of the bound,
   so the O(n) victim scan runs once per many inserts.

Leases live in a dict with their expiry; they only coordinate tasks of this process.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from tlspolicy.cache.backend import CLEANUP_INTERVAL_S, EVICT_TO_FRACTION, keep_until_after_use
from tlspolicy.cache.entry import CacheEntry


@dataclass(slots=True)
class _Slot:
    entry: CacheEntry
    keep_until: float


class MemoryBackend:
    """The ``memory`` backend. All methods are synchronous underneath; none raise."""

    name = "memory"
    shared = False

    def __init__(self, *, max_entries: int, clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._overrides: dict[str, tuple[str, float]] = {}
        self._next_cleanup = 0.0

    async def open(self) -> None:
        return None

    async def get(self, domain: str) -> CacheEntry | None:
        return self._live(domain, self._clock())

    async def get_many(self, domains: Sequence[str]) -> dict[str, CacheEntry]:
        now = self._clock()
        found: dict[str, CacheEntry] = {}
        for domain in domains:
            entry = self._live(domain, now)
            if entry is not None:
                found[domain] = entry
        return found

    async def put(self, entry: CacheEntry) -> None:
        now = self._clock()
        old = self._slots.get(entry.domain)
        if old is not None:
            entry = replace(
                entry,
                used_at=max(entry.used_at, old.entry.used_at),
                hits=max(entry.hits, old.entry.hits),
            )
        keep_until = entry.keep_until()
        if keep_until < now:
            self._slots.pop(entry.domain, None)
            return
        self._slots[entry.domain] = _Slot(entry, keep_until)
        if old is None and len(self._slots) > self._max_entries:
            self._evict(now, keep=entry.domain)
        elif now >= self._next_cleanup:
            self._drop_expired(now)

    async def touch(self, usage: Mapping[str, tuple[float, int]]) -> None:
        now = self._clock()
        for domain, (used_at, hits) in usage.items():
            slot = self._slots.get(domain)
            if slot is None or slot.keep_until < now:
                continue
            entry = slot.entry
            slot.entry = replace(entry, used_at=max(entry.used_at, used_at), hits=entry.hits + hits)
            slot.keep_until = keep_until_after_use(slot.keep_until, used_at)

    async def delete(self, domain: str) -> bool:
        slot = self._slots.pop(domain, None)
        return slot is not None and slot.keep_until >= self._clock()

    async def purge(self) -> int:
        removed = len(self._slots)
        self._slots.clear()
        return removed

    async def entries(self) -> list[CacheEntry]:
        now = self._clock()
        return [slot.entry for _, slot in sorted(self._slots.items()) if slot.keep_until >= now]

    async def count(self) -> int:
        now = self._clock()
        return sum(1 for slot in self._slots.values() if slot.keep_until >= now)

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        now = self._clock()
        held = self._leases.get(key)
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self._leases[key] = (owner, now + ttl)
        return True

    async def release_lease(self, key: str, owner: str) -> None:
        held = self._leases.get(key)
        if held is not None and held[0] == owner:
            del self._leases[key]

    async def put_override(self, domain: str, data: str, keep_until: float) -> None:
        self._overrides[domain] = (data, keep_until)

    async def overrides(self) -> dict[str, str]:
        now = self._clock()
        return {d: data for d, (data, keep) in sorted(self._overrides.items()) if keep >= now}

    async def delete_override(self, domain: str) -> bool:
        return self._overrides.pop(domain, None) is not None

    async def unchanged_elsewhere(self) -> bool:
        return True  # the store lives in this process: nobody else writes it

    async def aclose(self) -> None:
        return None

    def _live(self, domain: str, now: float) -> CacheEntry | None:
        slot = self._slots.get(domain)
        if slot is None:
            return None
        if slot.keep_until < now:
            del self._slots[domain]
            return None
        return slot.entry

    def _drop_expired(self, now: float) -> None:
        self._next_cleanup = now + CLEANUP_INTERVAL_S
        expired = [d for d, slot in self._slots.items() if slot.keep_until < now]
        for domain in expired:
            del self._slots[domain]
        self._leases = {k: v for k, v in self._leases.items() if v[1] > now}

    def _evict(self, now: float, *, keep: str) -> None:
        """Make room after inserting ``keep`` (never its victim: it was just stored)."""
        self._drop_expired(now)
        excess = len(self._slots) - self._max_entries
        if excess <= 0:
            return
        target = int(self._max_entries * EVICT_TO_FRACTION)
        victims = heapq.nsmallest(
            max(excess, len(self._slots) - target),
            ((d, slot) for d, slot in self._slots.items() if d != keep),
            key=lambda item: (item[1].entry.used_at, item[0]),
        )
        for domain, _ in victims:
            del self._slots[domain]
