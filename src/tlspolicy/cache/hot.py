"""The in-process hot layer of ``PolicyCache``: decoded entries in a bounded LRU, no I/O.

* A slot remembers when its entry was loaded (``PolicyCache`` re-reads old ones in the
  background) and its ``keep_until()``, computed once because every hit checks it; a slot
  past that instant is dropped when next looked at.
* A "dirty" slot was put while the backend was unavailable and is not written there yet;
  evicting it loses the write (the next query looks the domain up again), which is cheap.
* A domain the backend did not have is remembered as absent (bounded like the slots), so
  the reads of one cold lookup (the answer's, then each branch's merge) cost one backend
  read, not one each; ``PolicyCache`` trusts the mark for ``hot_ttl``, as it trusts a slot.
* ``OvertakenReads`` tells a backend read that finished after a local write or purge of
  the same domain, so that the older state it read is not installed over the newer one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace

from tlspolicy.cache.backend import keep_until_after_use
from tlspolicy.cache.entry import CacheEntry


@dataclass(slots=True)
class HotSlot:
    entry: CacheEntry
    loaded_at: float
    keep_until: float  # entry.keep_until(), computed once: get() checks it on every hit
    dirty: bool = False  # put while the backend was unavailable: not written there yet


class HotLayer:
    """At most ``capacity`` (at least 1) slots, least recently used evicted first."""

    def __init__(self, capacity: int) -> None:
        self._capacity = max(1, capacity)
        self._slots: OrderedDict[str, HotSlot] = OrderedDict()
        self._dirty: set[str] = set()
        self._absent: OrderedDict[str, float] = OrderedDict()  # domain -> read as absent at

    def slot(self, domain: str, now: float) -> HotSlot | None:
        """The live slot of ``domain`` (an expired one is dropped), without promoting it."""
        slot = self._slots.get(domain)
        if slot is not None and slot.keep_until < now:
            self.forget(domain)
            return None
        return slot

    def promote(self, domain: str) -> None:
        """Mark ``domain`` most recently used."""
        self._slots.move_to_end(domain)

    def install(self, entry: CacheEntry, now: float, *, dirty: bool = False) -> HotSlot:
        """Store ``entry`` as loaded at ``now``, evicting the least recently used."""
        slot = HotSlot(entry, now, entry.keep_until(), dirty)
        self._absent.pop(entry.domain, None)
        self._slots[entry.domain] = slot
        self._slots.move_to_end(entry.domain)
        if dirty:
            self._dirty.add(entry.domain)
        else:
            self._dirty.discard(entry.domain)
        while len(self._slots) > self._capacity:
            evicted, _ = self._slots.popitem(last=False)
            self._dirty.discard(evicted)  # a dirty copy is lost: the next query looks up
        return slot

    def written(self, slot: HotSlot) -> None:
        """``slot``'s entry reached the backend: clean, unless it was replaced meanwhile."""
        domain = slot.entry.domain
        if self._slots.get(domain) is slot:
            slot.dirty = False
            self._dirty.discard(domain)

    def forget(self, domain: str) -> None:
        self._slots.pop(domain, None)
        self._dirty.discard(domain)
        self._absent.pop(domain, None)

    def clear(self) -> None:
        self._slots.clear()
        self._dirty.clear()
        self._absent.clear()

    def note_absent(self, domain: str, now: float) -> None:
        """The backend had no entry for ``domain`` when read at ``now``."""
        self.forget(domain)
        self._absent[domain] = now
        while len(self._absent) > self._capacity:
            self._absent.popitem(last=False)

    def absent_since(self, domain: str) -> float | None:
        """When the backend was last read without an entry for ``domain`` (None: unknown)."""
        return self._absent.get(domain)

    def dirty_domains(self) -> list[str]:
        """The domains that may hold a dirty slot (a copy: callers write while iterating)."""
        return list(self._dirty)

    def discard_dirty(self, domain: str) -> None:
        """``domain`` needs no write-back (its slot is gone or clean)."""
        self._dirty.discard(domain)

    def add_uses(self, usage: Mapping[str, tuple[float, int]]) -> None:
        """Apply counters the backend accepted, so hot copies agree with it."""
        for domain, (used_at, hits) in usage.items():
            slot = self._slots.get(domain)
            if slot is not None:
                old = slot.entry
                slot.entry = replace(old, used_at=max(old.used_at, used_at), hits=old.hits + hits)
                slot.keep_until = keep_until_after_use(slot.keep_until, used_at)


class OvertakenReads:
    """Whether a backend read was overtaken by a local write or purge while in flight.

    Every write bumps a generation; a write to a domain with a read in flight records it,
    and a purge records itself for all domains. Only reads in flight are remembered.
    """

    def __init__(self) -> None:
        self._generation = 0
        self._reads: dict[str, int] = {}  # domain -> backend reads in flight
        self._written_at: dict[str, int] = {}
        self._purged_at = -1

    def wrote(self, domain: str) -> None:
        self._generation += 1
        if domain in self._reads:
            self._written_at[domain] = self._generation

    def purged(self) -> None:
        self._generation += 1
        self._purged_at = self._generation

    def start(self, domain: str) -> int:
        """A read of ``domain`` begins; pass the result to ``finish``."""
        self._reads[domain] = self._reads.get(domain, 0) + 1
        return self._generation

    def finish(self, domain: str, started: int) -> bool:
        """The read begun at ``started`` ended (in any way); True if it was overtaken."""
        overtaken = self._written_at.get(domain, -1) > started or self._purged_at > started
        readers = self._reads.pop(domain) - 1
        if readers:
            self._reads[domain] = readers
        else:
            self._written_at.pop(domain, None)
        return overtaken
