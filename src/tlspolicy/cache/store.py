"""``PolicyCache``: what the service talks to. A hot layer in front of one backend.

Rules kept here:

* **Hot layer.** A bounded LRU (``hot_entries``) of entries, held packed (``cache.hot``),
  each with the time it was loaded. A hot hit costs no I/O, ever: a copy older than
  ``hot_ttl`` seconds is still answered at once and re-read from the backend in the
  background (one read per domain at a time), except with the memory backend (whose store
  lives in this process). So another server's update (redis, postgres) or an admin command
  on the sqlite file is seen within ``hot_ttl`` plus one backend read. A backend that can
  tell that nobody else wrote (sqlite) vouches for all copies at once every ``hot_ttl / 2``
  (``run_quiet_checks``, ``cache.quiet``): while it does, no copy is re-read. ``get_fresh`` reads
  the backend now, for callers that are about to look up or write anyway. Writes of this
  process are visible at once. A domain the backend lacked is remembered as absent for
  ``hot_ttl`` too (``cache.hot``).
* **No lost updates between coroutines.** A backend read that a local ``put``/``delete``/
  ``purge`` overtook is not installed over the newer state (``cache.hot``); backend writes
  for one domain are serialised in call order (``cache.domain_locks``); usage counters only
  grow (see ``backend.py``).
* **Usage counting is free.** ``note_use`` only counts in memory (``cache.usage``); ``flush``
  sends the counts in one ``backend.touch`` batch (``run_maintenance`` calls it every
  ``FLUSH_INTERVAL_S``).
* **Outages.** When a backend call raises ``CacheError``, one WARNING is logged, and the
  backend is left alone (answers come from the hot layer and live lookups) except for a
  reconnect probe (``backend.open()``) with exponential backoff (``cache.outage``); one
  INFO line marks its return.
  ``get``/``put``/leases never raise; entries put during the outage stay in the hot layer
  ("dirty") and are written back by the first ``flush`` after it. Admin calls
  (``delete``, ``purge``, ``entries``, ``count``) raise ``CacheError`` instead, so a
  command never reports success it did not have.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tlspolicy.cache.backend import CacheBackend
from tlspolicy.cache.domain_locks import DomainLocks
from tlspolicy.cache.entry import CacheEntry
from tlspolicy.cache.hot import HotLayer, OvertakenReads
from tlspolicy.cache.outage import Outage
from tlspolicy.cache.quiet import QuietChecks
from tlspolicy.cache.usage import MIN_PENDING_DOMAINS, PendingUses
from tlspolicy.errors import CacheError

# How often run_maintenance writes usage counters and dirty entries, in seconds.
FLUSH_INTERVAL_S = 10.0


T = TypeVar("T")


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
        self._hot_ttl = hot_ttl
        self._clock = clock
        self._log = logger or logging.getLogger("tlspolicy.cache")
        self._revalidate = backend.name != "memory"
        self._hot = HotLayer(hot_entries)
        self._uses = PendingUses(max(hot_entries, MIN_PENDING_DOMAINS))
        # Count one use of a domain at a time; no I/O (``flush`` sends the counts). Bound
        # once: every hot answer calls it.
        self.note_use: Callable[[str, float], None] = self._uses.note
        self._overtaken = OvertakenReads()
        self._reloading: dict[str, asyncio.Task[CacheEntry | None]] = {}
        self._write_order = DomainLocks()
        self._outage = Outage(backend.name, backend.open, clock=clock, logger=self._log)
        self._quiet = QuietChecks(hot_ttl, always=not self._revalidate)
        # Called when a check finds that another process wrote (``check_quiet``): answers
        # derived from copies may no longer hold (the service drops its answer memos).
        self.on_changed_elsewhere: list[Callable[[], None]] = []

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
        return self._outage.healthy

    @property
    def outage_reason(self) -> str | None:
        """The error that started the current outage; None while the backend works."""
        return self._outage.reason

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

    async def run_quiet_checks(self) -> None:
        """Ask the backend every ``hot_ttl / 2`` s whether another process wrote, until
        cancelled (nothing to ask for the memory backend)."""
        if not self._revalidate:
            return
        while True:
            await self.check_quiet()  # the first at once: what is read after it can count
            await asyncio.sleep(self._hot_ttl / 2)

    async def check_quiet(self) -> None:
        """One check (``cache.quiet``); a failing backend counts as changed."""
        started = self._clock()
        unchanged = False
        if self._outage.healthy:
            try:
                unchanged = await self._backend.unchanged_elsewhere()
            except CacheError as exc:
                self._fail(exc)
        if self._quiet.checked(started, self._clock(), unchanged):
            for listener in self.on_changed_elsewhere:
                listener()

    def trusted_until(self, loaded_at: float) -> float:
        """Until when data this process read (or wrote) at ``loaded_at`` holds without a
        new read (``cache.quiet``); the answer memo lives no longer."""
        return self._quiet.trusted_until(loaded_at)

    def loaded_at(self, domain: str) -> float:
        """When the in-process copy of ``domain`` was read or written (0: none)."""
        slot = self._hot.slot(domain, self._clock())
        return 0.0 if slot is None else slot.loaded_at

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
        slot = self._hot.slot(domain, now)
        if slot is None:
            absent = self._hot.absent_since(domain)
            if absent is not None and now - absent < self._hot_ttl:
                return None
            return await self._load(domain, now)
        self._hot.promote(domain)
        stale = (
            self._revalidate and not slot.dirty and now >= self._quiet.trusted_until(slot.loaded_at)
        )
        if stale and domain not in self._reloading:
            # Answer with the copy now; the hot path never waits for the backend.
            task = asyncio.create_task(self._load(domain, now), name=f"cache-reload:{domain}")
            self._reloading[domain] = task
            task.add_done_callback(lambda _t: self._reloading.pop(domain, None))
        return self._hot.entry(slot)

    async def get_fresh(self, domain: str) -> CacheEntry | None:
        """Like ``get`` but re-reads a shared backend now (to see another server's result)."""
        now = self._clock()
        slot = self._hot.slot(domain, now)
        if slot is not None and (slot.dirty or not self._revalidate):
            return self._hot.entry(slot)
        return await self._load(domain, now)

    async def put(self, entry: CacheEntry) -> None:
        """Store in the hot layer and the backend. Never raises (see the outage rule)."""
        now = self._clock()
        domain = entry.domain
        self._overtaken.wrote(domain)
        if entry.keep_until() < now:
            self._hot.forget(domain)
            slot = None
        else:
            slot = self._hot.install(entry, now, dirty=True)
        async with self._write_order.turn(domain):
            if not await self._ready():
                return
            try:
                await self._backend.put(entry)
            except CacheError as exc:
                self._fail(exc)
                return
        if slot is not None:
            self._hot.written(slot)

    async def flush(self) -> None:
        """Write back dirty entries and send usage counters. Never raises."""
        if not await self._ready():
            return
        now = self._clock()
        for domain in self._hot.dirty_domains():
            slot = self._hot.slot(domain, now)
            if slot is None or not slot.dirty:
                self._hot.discard_dirty(domain)
                continue
            await self.put(self._hot.entry(slot))
            if not self._outage.healthy:
                return
        batch = self._uses.take()
        if not batch:
            return
        try:
            await self._backend.touch(batch)
        except CacheError as exc:
            self._fail(exc)
            self._uses.restore(batch)
            return
        self._hot.add_uses(batch)

    # --- internals -------------------------------------------------------------------

    async def _load(self, domain: str, now: float) -> CacheEntry | None:
        """Read through to the backend; fall back to the hot copy when it is unavailable."""
        if not await self._ready():
            slot = self._hot.slot(domain, now)
            return None if slot is None else self._hot.entry(slot)
        started = self._overtaken.start(domain)
        try:
            entry = await self._backend.get(domain)
            failed = False
        except CacheError as exc:
            self._fail(exc)
            entry, failed = None, True
        finally:
            overtaken = self._overtaken.finish(domain, started)
        if failed or overtaken:
            slot = self._hot.slot(domain, now)
            return None if slot is None else self._hot.entry(slot)
        if entry is None:
            self._hot.note_absent(domain, now)
            return None
        self._hot.install(entry, now, name=domain)
        return entry

    async def _ready(self) -> bool:
        return await self._outage.ready()

    def _fail(self, exc: CacheError) -> None:
        self._outage.fail(exc)

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
