"""The in-process hot layer of ``PolicyCache``: entries in a bounded LRU, no I/O.

* A slot holds its entry packed (``cache.packing``: about a tenth of the decoded objects),
  and the ``DECODED_ENTRIES`` most recently used slots also hold it decoded, so the reads
  of one lookup or of a busy domain decode nothing while thousands of idle domains cost
  their packed bytes only. A new entry is packed when its decoded copy is let go, unless
  it replaced a slot with the same data (a background re-read), whose packed form it keeps.
* A slot remembers when its entry was loaded (``PolicyCache`` re-reads old ones in the
  background) and its ``keep_until()``, computed once because every hit checks it; a slot
  past that instant is dropped when next looked at. Its usage counters are its own fields:
  they change without the rest of the entry.
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
from tlspolicy.cache.packing import pack, unpack

# Slots that keep their entry decoded as well: more than the lookups in flight at once.
DECODED_ENTRIES = 256


@dataclass(slots=True)
class HotSlot:
    domain: str
    packed: bytes  # the entry without its counters (cache.packing); b"": not packed yet
    decoded: CacheEntry | None  # the entry itself, while among the recently used
    loaded_at: float
    keep_until: float  # entry.keep_until(), computed once: get() checks it on every hit
    used_at: float
    hits: int
    dirty: bool = False  # put while the backend was unavailable: not written there yet


class HotLayer:
    """At most ``capacity`` (at least 1) slots, least recently used evicted first."""

    def __init__(self, capacity: int, decoded: int = DECODED_ENTRIES) -> None:
        self._capacity = max(1, capacity)
        self._slots: OrderedDict[str, HotSlot] = OrderedDict()
        self._dirty: set[str] = set()
        self._absent: OrderedDict[str, float] = OrderedDict()  # domain -> read as absent at
        self._decoded_capacity = max(1, decoded)
        self._decoded: OrderedDict[str, None] = OrderedDict()  # slots holding ``decoded``

    def slot(self, domain: str, now: float) -> HotSlot | None:
        """The live slot of ``domain`` (an expired one is dropped), without promoting it."""
        slot = self._slots.get(domain)
        if slot is not None and slot.keep_until < now:
            self.forget(domain)
            return None
        return slot

    def entry(self, slot: HotSlot) -> CacheEntry:
        """``slot``'s entry, decoded once and kept while it is among the recently used."""
        entry = slot.decoded
        if entry is None:
            entry = unpack(slot.packed, slot.domain, slot.used_at, slot.hits)
            slot.decoded = entry
        if self._slots.get(slot.domain) is slot:
            self._hold_decoded(slot.domain)
        return entry

    def promote(self, domain: str) -> None:
        """Mark ``domain`` most recently used."""
        self._slots.move_to_end(domain)

    def install(
        self, entry: CacheEntry, now: float, *, dirty: bool = False, name: str | None = None
    ) -> HotSlot:
        """Store ``entry`` as loaded at ``now``, evicting the least recently used.

        ``name``: the caller's copy of ``entry.domain`` (the request's, also held by its
        memo), kept instead of the one decoded from the backend: one string, not two.
        """
        domain = entry.domain if name is None else name
        slot = HotSlot(domain, self._same_packed(domain, entry), entry, now, entry.keep_until(),
                       entry.used_at, entry.hits, dirty)  # fmt: skip
        self._absent.pop(domain, None)
        self._slots[domain] = slot
        self._slots.move_to_end(domain)
        if dirty:
            self._dirty.add(domain)
        else:
            self._dirty.discard(domain)
        while len(self._slots) > self._capacity:
            evicted, _ = self._slots.popitem(last=False)
            self._dirty.discard(evicted)  # a dirty copy is lost: the next query looks up
            self._decoded.pop(evicted, None)
        self._hold_decoded(domain)
        return slot

    def written(self, slot: HotSlot) -> None:
        """``slot``'s entry reached the backend: clean, unless it was replaced meanwhile."""
        domain = slot.domain
        if self._slots.get(domain) is slot:
            slot.dirty = False
            self._dirty.discard(domain)

    def forget(self, domain: str) -> None:
        self._slots.pop(domain, None)
        self._dirty.discard(domain)
        self._absent.pop(domain, None)
        self._decoded.pop(domain, None)

    def clear(self) -> None:
        self._slots.clear()
        self._dirty.clear()
        self._absent.clear()
        self._decoded.clear()

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
                slot.used_at = max(slot.used_at, used_at)
                slot.hits += hits
                slot.keep_until = keep_until_after_use(slot.keep_until, used_at)
                if slot.decoded is not None:
                    slot.decoded = replace(slot.decoded, used_at=slot.used_at, hits=slot.hits)

    def _same_packed(self, domain: str, entry: CacheEntry) -> bytes:
        """The packed form of ``entry`` if the slot it replaces holds the same branches
        (a background re-read usually finds what was there), else b"" (packed later)."""
        old = self._slots.get(domain)
        if old is None or not old.packed or old.decoded is None:
            return b""
        same = old.decoded.dane == entry.dane and old.decoded.sts == entry.sts
        return old.packed if same else b""

    def _hold_decoded(self, domain: str) -> None:
        """Count ``domain``'s slot among the decoded ones; the oldest beyond the bound is
        packed (if new) and lets its decoded copy go."""
        self._decoded[domain] = None
        self._decoded.move_to_end(domain)
        while len(self._decoded) > self._decoded_capacity:
            oldest, _ = self._decoded.popitem(last=False)
            slot = self._slots.get(oldest)
            if slot is not None and slot.decoded is not None:
                if not slot.packed:
                    slot.packed = pack(slot.decoded)
                slot.decoded = None


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
