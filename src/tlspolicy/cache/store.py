"""``PolicyCache``: what the service talks to. A hot layer in front of one backend.

Rules kept here:

* **Hot layer.** A bounded LRU (``hot_entries``) of decoded entries, each with the time it was
  loaded. A hot hit costs no I/O, ever: a copy older than ``hot_ttl`` seconds is still
  answered at once and re-read from the backend in the background (one read per domain at a
  time), except with the memory backend (whose store lives in this process). So another
  server's update (redis, postgres) or an admin command on the sqlite file is seen within
  ``hot_ttl`` plus one backend read. ``get_fresh`` reads the backend now, for callers that
  are about to look up or write anyway. Writes of this process are visible at once.
* **No lost updates between coroutines.** A backend read that a local ``put``/``delete``/
  ``purge`` overtook is not installed over the newer state; backend writes for one domain
  are serialised in call order; usage counters only grow (see ``backend.py``).
* **Usage counting is free.** ``note_use`` only counts in memory; ``flush`` sends the counts
  in one ``backend.touch`` batch (``run_maintenance`` calls it every ``FLUSH_INTERVAL_S``).
* **Outages.** When a backend call raises ``CacheError``, one WARNING is logged, and the
  backend is left alone (answers come from the hot layer and live lookups) except for a
  reconnect probe (``backend.open()``) with exponential backoff from
  ``PROBE_BACKOFF_MIN_S`` to ``PROBE_BACKOFF_MAX_S``; one INFO line marks its return.
  ``get``/``put``/leases never raise; entries put during the outage stay in the hot layer
  ("dirty") and are written back by the first ``flush`` after it. Admin calls
  (``delete``, ``purge``, ``entries``, ``count``) raise ``CacheError`` instead, so a
  command never reports success it did not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from tlspolicy.cache.backend import CacheBackend, keep_until_after_use
from tlspolicy.cache.entry import CacheEntry
from tlspolicy.errors import CacheError

T = TypeVar("T")

# Reconnect probe backoff after a backend failure, doubling from MIN to MAX (seconds).
PROBE_BACKOFF_MIN_S = 1.0
PROBE_BACKOFF_MAX_S = 60.0
# How often run_maintenance writes usage counters and dirty entries, in seconds.
FLUSH_INTERVAL_S = 10.0
# Distinct domains whose uses are counted between flushes; further ones go uncounted
# (counters only steer eviction and refresh-ahead, so losing some is harmless).
MIN_PENDING_DOMAINS = 10_000


@dataclass(slots=True)
class _Hot:
    entry: CacheEntry
    loaded_at: float
    keep_until: float  # entry.keep_until(), computed once: get() checks it on every hit
    dirty: bool = False  # put while the backend was unavailable: not written there yet


class PolicyCache:
    """The hot layer plus one ``CacheBackend``; one instance per process and event loop."""

    def __init__(
        self,
        backend: CacheBackend,
        *,
        hot_entries: int,
        hot_ttl: float,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
    ) -> None:
        self._backend = backend
        self._hot_entries = max(1, hot_entries)
        self._hot_ttl = hot_ttl
        self._clock = clock
        self._log = logger or logging.getLogger("tlspolicy.cache")
        self._revalidate = backend.name != "memory"
        self._hot: OrderedDict[str, _Hot] = OrderedDict()
        self._dirty: set[str] = set()
        self._pending: dict[str, tuple[float, int]] = {}
        self._max_pending = max(hot_entries, MIN_PENDING_DOMAINS)
        # Overtaken-read detection: a write bumps _generation and, if a backend read of that
        # domain is in flight, records it in _written_at; purge records _purged_at.
        self._generation = 0
        self._reads: dict[str, int] = {}
        self._reloading: dict[str, asyncio.Task[CacheEntry | None]] = {}
        self._written_at: dict[str, int] = {}
        self._purged_at = -1
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        # Outage state.
        self._outage: str | None = None
        self._outage_since = 0.0
        self._recovered_at = float("-inf")
        self._backoff = PROBE_BACKOFF_MIN_S
        self._retry_at = 0.0
        self._probing = False

    # --- status ----------------------------------------------------------------------

    @property
    def backend_name(self) -> str:
        return self._backend.name

    @property
    def shared(self) -> bool:
        """True when other servers write the same store (leases then matter)."""
        return self._backend.shared

    @property
    def healthy(self) -> bool:
        return self._outage is None

    @property
    def outage_reason(self) -> str | None:
        """The error that started the current outage; None while the backend works."""
        return self._outage

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Open the backend. A shared backend that is down only starts an outage.

        Raises:
            CacheError: a local backend (memory, sqlite) cannot be used: do not start.
        """
        try:
            await self._backend.open()
        except CacheError as exc:
            if not self._backend.shared:
                raise
            self._fail(exc)

    async def run_maintenance(self, *, interval: float = FLUSH_INTERVAL_S) -> None:
        """Flush counters and probe a failed backend every ``interval`` s, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.flush()

    async def aclose(self) -> None:
        """Write what is pending (best effort), then close the backend."""
        reloads = list(self._reloading.values())
        for task in reloads:
            task.cancel()
        await asyncio.gather(*reloads, return_exceptions=True)
        await self.flush()
        try:
            await self._backend.aclose()
        except CacheError as exc:
            self._log.debug("closing cache backend %s: %s", self._backend.name, exc)

    # --- the hot path ----------------------------------------------------------------

    async def get(self, domain: str) -> CacheEntry | None:
        """The live entry for ``domain`` or None. Never raises; hot copies first."""
        now = self._clock()
        slot = self._hot_slot(domain, now)
        if slot is None:
            return await self._load(domain, now)
        self._hot.move_to_end(domain)
        stale = self._revalidate and not slot.dirty and now - slot.loaded_at >= self._hot_ttl
        if stale and domain not in self._reloading:
            # Answer with the copy now; the hot path never waits for the backend.
            task = asyncio.create_task(self._load(domain, now), name=f"cache-reload:{domain}")
            self._reloading[domain] = task
            task.add_done_callback(lambda _t: self._reloading.pop(domain, None))
        return slot.entry

    async def get_fresh(self, domain: str) -> CacheEntry | None:
        """Like ``get`` but re-reads a shared backend now (to see another server's result)."""
        now = self._clock()
        slot = self._hot_slot(domain, now)
        if slot is not None and (slot.dirty or not self._revalidate):
            return slot.entry
        return await self._load(domain, now)

    async def put(self, entry: CacheEntry) -> None:
        """Store in the hot layer and the backend. Never raises (see the outage rule)."""
        now = self._clock()
        domain = entry.domain
        self._note_write(domain)
        if entry.keep_until() < now:
            self._forget(domain)
            slot = None
        else:
            slot = self._install(entry, now, dirty=True)
        async with self._domain_lock(domain):
            if not await self._ready():
                return
            try:
                await self._backend.put(entry)
            except CacheError as exc:
                self._fail(exc)
                return
        if slot is not None and self._hot.get(domain) is slot:
            slot.dirty = False
            self._dirty.discard(domain)

    def note_use(self, domain: str, now: float) -> None:
        """Count one use of ``domain`` at ``now``; no I/O (``flush`` sends the counts)."""
        pending = self._pending.get(domain)
        if pending is not None:
            self._pending[domain] = (max(pending[0], now), pending[1] + 1)
        elif len(self._pending) < self._max_pending:
            self._pending[domain] = (now, 1)

    async def flush(self) -> None:
        """Write back dirty entries and send usage counters. Never raises."""
        if not await self._ready():
            return
        now = self._clock()
        for domain in list(self._dirty):
            slot = self._hot_slot(domain, now)
            if slot is None or not slot.dirty:
                self._dirty.discard(domain)
                continue
            await self.put(slot.entry)
            if self._outage is not None:
                return
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            await self._backend.touch(batch)
        except CacheError as exc:
            self._fail(exc)
            for domain, (used_at, hits) in batch.items():
                self._merge_pending(domain, used_at, hits)
            return
        for domain, (used_at, hits) in batch.items():
            slot = self._hot.get(domain)
            if slot is not None:
                old = slot.entry
                slot.entry = replace(old, used_at=max(old.used_at, used_at), hits=old.hits + hits)
                slot.keep_until = keep_until_after_use(slot.keep_until, used_at)

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
        self._note_write(domain)
        self._forget(domain)
        self._pending.pop(domain, None)
        async with self._domain_lock(domain):
            return await self._admin(lambda: self._backend.delete(domain))

    async def purge(self) -> int:
        """Forget everything; returns how many stored entries the backend removed.

        Raises:
            CacheError: the backend is unavailable (the hot layer is cleared anyway).
        """
        self._generation += 1
        self._purged_at = self._generation
        self._hot.clear()
        self._dirty.clear()
        self._pending.clear()
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

    # --- internals -------------------------------------------------------------------

    def _hot_slot(self, domain: str, now: float) -> _Hot | None:
        slot = self._hot.get(domain)
        if slot is not None and slot.keep_until < now:
            self._forget(domain)
            return None
        return slot

    def _install(self, entry: CacheEntry, now: float, *, dirty: bool = False) -> _Hot:
        slot = _Hot(entry, now, entry.keep_until(), dirty)
        self._hot[entry.domain] = slot
        self._hot.move_to_end(entry.domain)
        if dirty:
            self._dirty.add(entry.domain)
        else:
            self._dirty.discard(entry.domain)
        while len(self._hot) > self._hot_entries:
            evicted, _ = self._hot.popitem(last=False)
            self._dirty.discard(evicted)  # a dirty copy is lost: the next query looks up
        return slot

    def _forget(self, domain: str) -> None:
        self._hot.pop(domain, None)
        self._dirty.discard(domain)

    def _note_write(self, domain: str) -> None:
        self._generation += 1
        if domain in self._reads:
            self._written_at[domain] = self._generation

    async def _load(self, domain: str, now: float) -> CacheEntry | None:
        """Read through to the backend; fall back to the hot copy when it is unavailable."""
        if not await self._ready():
            slot = self._hot_slot(domain, now)
            return None if slot is None else slot.entry
        started = self._generation
        self._reads[domain] = self._reads.get(domain, 0) + 1
        try:
            entry = await self._backend.get(domain)
            failed = False
        except CacheError as exc:
            self._fail(exc)
            entry, failed = None, True
        finally:
            overtaken = self._written_at.get(domain, -1) > started or self._purged_at > started
            readers = self._reads.pop(domain) - 1
            if readers:
                self._reads[domain] = readers
            else:
                self._written_at.pop(domain, None)
        if failed or overtaken:
            slot = self._hot_slot(domain, now)
            return None if slot is None else slot.entry
        if entry is None:
            self._forget(domain)
            return None
        self._install(entry, now)
        return entry

    @contextlib.asynccontextmanager
    async def _domain_lock(self, domain: str) -> AsyncIterator[None]:
        """Serialise backend writes for one domain in call order (asyncio.Lock is FIFO)."""
        lock, users = self._locks.get(domain, (asyncio.Lock(), 0))
        self._locks[domain] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[domain]
            if users > 1:
                self._locks[domain] = (lock, users - 1)
            else:
                del self._locks[domain]

    async def _admin(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run an admin call; unlike the hot path it raises when the backend is down."""
        if not await self._ready():
            raise CacheError(f"cache backend {self._backend.name} unavailable: {self._outage}")
        try:
            return await call()
        except CacheError as exc:
            self._fail(exc)
            raise

    def _merge_pending(self, domain: str, used_at: float, hits: int) -> None:
        pending = self._pending.get(domain)
        if pending is None:
            self._pending[domain] = (used_at, hits)
        else:
            self._pending[domain] = (max(pending[0], used_at), pending[1] + hits)

    async def _ready(self) -> bool:
        """True when the backend may be called; during an outage, probe when it is due."""
        if self._outage is None:
            return True
        now = self._clock()
        if self._probing or now < self._retry_at:
            return False
        self._probing = True
        self._retry_at = now + self._backoff  # concurrent callers do not probe too
        try:
            await self._backend.open()
        except CacheError as exc:
            self._backoff = min(self._backoff * 2, PROBE_BACKOFF_MAX_S)
            self._retry_at = self._clock() + self._backoff
            self._log.debug("cache backend %s still unavailable: %s", self._backend.name, exc)
            return False
        finally:
            self._probing = False
        self._recovered_at = self._clock()
        self._log.info(
            "cache backend %s available again after %.0f s",
            self._backend.name,
            self._recovered_at - self._outage_since,
        )
        self._outage = None
        return True

    def _fail(self, exc: CacheError) -> None:
        """Start an outage (one WARNING); nothing more if one is already running."""
        if self._outage is not None:
            return
        now = self._clock()
        self._outage = str(exc) or type(exc).__name__
        self._outage_since = now
        # A backend that fails again soon after coming back keeps its longer backoff, so a
        # flapping store logs a pair of lines per backoff period, not per request.
        if now - self._recovered_at >= PROBE_BACKOFF_MAX_S:
            self._backoff = PROBE_BACKOFF_MIN_S
        else:
            self._backoff = min(self._backoff * 2, PROBE_BACKOFF_MAX_S)
        self._retry_at = now + self._backoff
        self._log.warning(
            "cache backend %s unavailable: %s; answering from memory and live lookups",
            self._backend.name,
            self._outage,
        )
