"""Name + key → reply: the cache, the two lookup branches, coalescing and refresh-ahead.

Flow for one query (``answer``):
1. The key becomes a policy domain (``socketmap.keys``) and the map name a profile.
2. The cache entry is read from the in-process hot layer (no network for cached domains).
3. A fresh DANE branch that says ``dane``/``dane-only`` answers at once. Otherwise the
   DANE lookup and (if needed) the MTA-STS lookup start together; a DANE verdict is
   answered as soon as it is known, the MTA-STS task carries on and fills the cache.
4. An MTA-STS policy that is valid but due for a TXT id re-check is answered from the
   cache while the re-check runs in the background (RFC 8461 §5.1 keeps applying a valid
   cached policy while a new one is looked for).
5. Lookups of one domain and branch are coalesced: concurrent queries await one task. With
   a shared backend a lease stops several servers from looking up the same domain.
6. Entries that were used and come near expiry are refreshed in the background, spread out
   with jitter and bounded in concurrency; a failed refresh keeps the old data and backs off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from tlspolicy.cache.entry import CacheEntry, DaneBranch
from tlspolicy.cache.store import PolicyCache
from tlspolicy.config import Config, MapProfile
from tlspolicy.dane.lookup import lookup_dane
from tlspolicy.dane.result import DaneLevel, DaneResult
from tlspolicy.decision import Decision, Verdict, decide_dane_first, decide_sts
from tlspolicy.dnsdata import DnsClient
from tlspolicy.errors import ProtocolError
from tlspolicy.metrics import NULL_METRICS, MetricsSink
from tlspolicy.mtasts.lookup import Fetcher, refresh_sts
from tlspolicy.mtasts.policy import Mode
from tlspolicy.mtasts.state import Freshness, StsState, StsView, fresh_until, sts_view
from tlspolicy.socketmap.answer import NOTFOUND, format_reply, perm, temp
from tlspolicy.socketmap.keys import normalize_key
from tlspolicy.trace import Trace

log = logging.getLogger("tlspolicy.service")
T = TypeVar("T")

# A lookup another server holds a lease for is awaited this long before we do it ourselves.
LEASE_WAIT_S = 5.0
LEASE_POLL_S = 0.05
# A failed DANE refresh is retried after this delay, doubling up to the maximum.
REFRESH_RETRY_S = 30.0
REFRESH_RETRY_MAX_S = 1800.0
# Refresh-ahead jitter: a refresh is spread over this share of the remaining lifetime.
REFRESH_JITTER_SHARE = 0.5
# Answers memoised for the synchronous fast path (``answer_now``); cleared when full.
MAX_MEMO_ENTRIES = 20000


@dataclass(slots=True)
class Resolution:
    """How one domain was decided (for logs, metrics and ``tlspolicy query``)."""

    domain: str
    decision: Decision
    source: str  # "cache" | "live"
    dane: DaneResult | None = None
    sts: StsView | None = None
    sts_state: StsState | None = None
    trace: Trace | None = None
    reusable_until: float = 0.0  # a cache-only decision holds until then (0: do not reuse)


@dataclass(slots=True)
class _Memo:
    """A reply derived only from cached data, reusable until the data could change."""

    reply: str
    kind: str  # metric answer label
    domain: str
    until: float


@dataclass(slots=True)
class _RefreshState:
    due: float
    checked_at: float  # the DANE branch this refresh replaces (another server may be newer)
    failures: int = 0


class PolicyService:
    def __init__(
        self,
        config: Config,
        *,
        dns: DnsClient,
        fetcher: Fetcher,
        cache: PolicyCache,
        clock: Callable[[], float] = time.time,
        metrics: MetricsSink = NULL_METRICS,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.dns = dns
        self.fetcher = fetcher
        self.cache = cache
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"
        self._inflight: dict[tuple[str, str], asyncio.Task[Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._refresh: dict[str, _RefreshState] = {}
        self._memo: dict[tuple[str, str], _Memo] = {}
        self._memo_keys: dict[str, list[tuple[str, str]]] = {}
        self._refresh_wakeup = asyncio.Event()
        self._refresh_slots = asyncio.Semaphore(config.cache.refresh_concurrency)
        self._scheduler: asyncio.Task[None] | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._closing = False

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background work: refresh-ahead and cache maintenance."""
        if self.config.cache.refresh_ahead and self._scheduler is None:
            self._scheduler = asyncio.create_task(self._refresh_loop(), name="refresh-ahead")
        if self._maintenance is None:
            self._maintenance = asyncio.create_task(
                self.cache.run_maintenance(), name="cache-maintenance"
            )

    def reconfigure(self, config: Config) -> None:
        """Take new maps/timeouts (SIGHUP); backends and listeners stay as they are."""
        self.config = config
        self._forget_memos()

    async def aclose(self) -> None:
        self._closing = True
        for loop_task in (self._scheduler, self._maintenance):
            if loop_task is not None:
                loop_task.cancel()
                await asyncio.gather(loop_task, return_exceptions=True)
        pending = [*self._background, *self._inflight.values()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # --- the socketmap entry points ----------------------------------------------------

    def answer_now(self, name: str, key: str) -> str | None:
        """The reply for a request answered before from cached data alone, if it still holds.

        Synchronous, so the server can reply without scheduling anything: the hot path of a
        busy MTA. A memo holds no longer than the cached data it came from (DANE expiry or
        refresh window, MTA-STS id re-check, policy expiry, negative caching) and at most
        ``cache.hot_ttl`` seconds; storing a new result for the domain drops it.
        """
        memo = self._memo.get((name, key))
        if memo is None:
            return None
        now = self.clock()
        if now >= memo.until:
            del self._memo[(name, key)]
            return None
        self.cache.note_use(memo.domain, now)
        self.metrics.cache("hot", True)
        self.metrics.query(name, memo.kind)
        return memo.reply

    def _remember(self, name: str, key: str, domain: str, reply: str, until: float) -> None:
        if len(self._memo) >= MAX_MEMO_ENTRIES:
            self._forget_memos()
        kind = _answer_kind(reply)
        self._memo[(name, key)] = _Memo(reply, kind, domain, until)
        self._memo_keys.setdefault(domain, []).append((name, key))

    def _forget_memos(self, domain: str | None = None) -> None:
        if domain is None:
            self._memo.clear()
            self._memo_keys.clear()
            return
        for memo_key in self._memo_keys.pop(domain, ()):
            self._memo.pop(memo_key, None)

    async def answer(self, name: str, key: str) -> str:
        """The reply payload for one socketmap request. Never raises (but ProtocolError)."""
        profile = self.config.profile(name)
        if profile is None:  # a client-chosen name never becomes a metric label
            return self._count("other", perm(f"unknown map {name}"))
        parsed = normalize_key(key)  # may raise ProtocolError: the server closes
        if parsed.domain is None:
            log.debug("%s %r: NOTFOUND (%s)", name, key, parsed.why)
            return self._count(name, NOTFOUND)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.server.request_timeout):
                resolution = await self.resolve(parsed.domain, profile)
        except TimeoutError:
            log.warning(
                "%s: no answer within %.1fs", parsed.domain, self.config.server.request_timeout
            )
            return self._count(name, temp("policy lookup timed out"))
        except ProtocolError:
            raise
        except Exception:
            log.exception("%s: internal error", parsed.domain)
            return self._count(name, temp("internal error"))
        reply = format_reply(resolution.decision, profile)
        elapsed = (time.monotonic() - started) * 1000
        if resolution.source == "live":
            log.info(
                "%s: %s (%s) in %.1f ms",
                parsed.domain,
                resolution.decision.verdict.value,
                resolution.decision.reason,
                elapsed,
            )
        else:
            log.debug("%s: %s from cache", parsed.domain, resolution.decision.verdict.value)
            if resolution.reusable_until > self.clock():
                self._remember(name, key, parsed.domain, reply, resolution.reusable_until)
        self.metrics.cache("hot", resolution.source == "cache")
        return self._count(name, reply)

    def _count(self, name: str, reply: str) -> str:
        kind = _answer_kind(reply)
        self.metrics.query(name, kind)
        return reply

    # --- resolution --------------------------------------------------------------------

    async def resolve(
        self, domain: str, profile: MapProfile, *, trace: Trace | None = None
    ) -> Resolution:
        now = self.clock()
        entry = await self.cache.get(domain)
        if self.cache.shared and self._would_look_up(entry, now):
            # Another server may have done this lookup already: ask the shared store, not
            # our in-process copy (the hot path above stays free of network round trips).
            entry = await self.cache.get_fresh(domain)
        self.cache.note_use(domain, now)
        dane_branch = entry.dane if entry is not None else None
        sts_state = entry.sts if entry is not None else None
        view = self._view(sts_state, now)
        temp_on_dns = self.config.mta_sts.dns_failure == "temp"

        reusable_until = now + self.config.cache.hot_ttl
        if not self.config.dane.enabled:
            dane: DaneResult | None = DaneResult(DaneLevel.NONE, "DANE disabled", 0)
        elif dane_branch is not None and dane_branch.fresh(now):
            dane = dane_branch.result
            refresh_at = self._consider_refresh(
                domain, dane_branch.checked_at, dane_branch.expires_at, now
            )
            reusable_until = min(reusable_until, refresh_at)
        else:
            dane = None

        sts_task: asyncio.Task[StsState] | None = None
        if view.freshness is Freshness.STALE and (dane is None or dane.level is DaneLevel.NONE):
            sts_task = self._branch_task(domain, "sts", lambda: self._lookup_sts(domain, trace))
        if dane is None:
            source = "live"
            dane = await self._await(
                self._branch_task(domain, "dane", lambda: self._lookup_dane(domain, trace))
            )
            if (
                dane.level is DaneLevel.NONE
                and view.freshness is Freshness.STALE
                and sts_task is None
            ):
                sts_task = self._branch_task(domain, "sts", lambda: self._lookup_sts(domain, trace))
        else:
            source = "cache"

        if dane.level is not DaneLevel.NONE:
            decision = decide_dane_first(domain, dane, None, profile)
            return Resolution(
                domain, decision, source, dane=dane, trace=trace, reusable_until=reusable_until
            )

        if sts_task is not None:
            source = "live"
            sts_state = await self._await(sts_task)
            view = self._view(sts_state, self.clock())
        elif view.freshness is Freshness.RECHECK:
            self._background_sts(domain, sts_state)
        reusable_until = min(
            reusable_until,
            fresh_until(sts_state, now, recheck_interval=self.config.mta_sts.recheck_interval),
        )
        decision = decide_sts(domain, view, profile, temp_on_dns_failure=temp_on_dns)
        if decision.verdict is Verdict.TEMP:
            reusable_until = 0.0
        return Resolution(
            domain,
            decision,
            source,
            dane,
            view,
            sts_state,
            trace=trace,
            reusable_until=reusable_until,
        )

    async def sts_for_display(self, domain: str, trace: Trace | None) -> StsState:
        """The MTA-STS state when DANE decided (``tlspolicy query``): the lookup already
        started in the background if there is one, else a new one."""
        task = self._inflight.get((domain, "sts"))
        if task is not None:
            state: StsState = await self._await(task)
            return state
        entry = await self.cache.get(domain)  # the background lookup may be done already
        if entry is not None and entry.sts is not None:
            return entry.sts
        return await self._lookup_sts(domain, trace)

    def _would_look_up(self, entry: CacheEntry | None, now: float) -> bool:
        if entry is None:
            return True
        dane = entry.dane
        if self.config.dane.enabled and (dane is None or not dane.fresh(now)):
            return True
        dane_decides = dane is not None and dane.result.level is not DaneLevel.NONE
        stale = self._view(entry.sts, now).freshness is Freshness.STALE
        return not dane_decides and stale

    def _view(self, state: StsState | None, now: float) -> StsView:
        return sts_view(state, now, recheck_interval=self.config.mta_sts.recheck_interval)

    async def _await(self, task: asyncio.Task[T]) -> T:
        # Shielded: a caller that gives up (timeout, disconnect) must not cancel the lookup
        # other callers wait for, nor lose its result for the cache.
        return await asyncio.shield(task)

    def _branch_task(
        self,
        domain: str,
        branch: str,
        factory: Callable[[], Awaitable[T]],
        *,
        newer_than: float = 0.0,
    ) -> asyncio.Task[T]:
        """One lookup per domain and branch at a time; ``newer_than``: see ``_leased``."""
        key = (domain, branch)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(
                self._leased(domain, branch, factory, newer_than), name=f"{branch}:{domain}"
            )
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        return task

    async def _leased(
        self,
        domain: str,
        branch: str,
        factory: Callable[[], Awaitable[T]],
        newer_than: float = 0.0,
    ) -> T:
        """With a shared cache, let one server do the lookup and the others read its result.

        A stored result counts as "done by another server" only when it was checked after
        ``newer_than`` (a refresh passes the time of the data it replaces).
        """
        if not self.cache.shared:
            return await factory()
        lease = f"lookup:{branch}:{domain}"
        ttl = self.config.server.request_timeout
        if await self.cache.acquire_lease(lease, self.owner, ttl):
            try:
                # Another server may have finished this lookup (and released the lease)
                # between our first read and now: look once more before doing it again.
                done = await self._shared_result(domain, branch, newer_than)
                if done is not None:
                    return done  # type: ignore[return-value]
                return await factory()
            finally:
                await self.cache.release_lease(lease, self.owner)
        deadline = time.monotonic() + LEASE_WAIT_S
        while time.monotonic() < deadline:
            await asyncio.sleep(LEASE_POLL_S)
            found = await self._shared_result(domain, branch, newer_than)
            if found is not None:
                return found  # type: ignore[return-value]
        return await factory()

    async def _shared_result(
        self, domain: str, branch: str, newer_than: float = 0.0
    ) -> DaneResult | StsState | None:
        entry = await self.cache.get_fresh(domain)
        if entry is None:
            return None
        now = self.clock()
        dane = entry.dane
        if branch == "dane" and dane is not None and dane.fresh(now):
            return dane.result if dane.checked_at > newer_than else None
        if branch == "sts" and entry.sts is not None and entry.sts.checked_at <= newer_than:
            return None
        usable = entry.sts is not None and self._view(entry.sts, now).freshness
        if branch == "sts" and usable and usable is not Freshness.STALE:
            return entry.sts
        return None

    # --- the two branches ------------------------------------------------------------

    async def _lookup_dane(self, domain: str, trace: Trace | None) -> DaneResult:
        cfg = self.config
        started = time.monotonic()
        result = await lookup_dane(
            domain,
            self.dns,
            concurrency=cfg.dns.concurrency,
            min_ttl=cfg.dane.min_ttl,
            max_ttl=cfg.dane.max_ttl,
            negative_ttl=cfg.dane.negative_ttl,
            trace=trace,
        )
        self.metrics.lookup_seconds("dane", time.monotonic() - started)
        if result.level is not DaneLevel.TEMP:  # TEMP is never cached
            now = self.clock()
            await self._store(domain, dane=DaneBranch(result, now, now + result.ttl))
        return result

    async def _lookup_sts(self, domain: str, trace: Trace | None) -> StsState:
        async with self._lock(domain):
            entry = await self.cache.get(domain)
            old = entry.sts if entry is not None else None
        started = time.monotonic()
        new = await refresh_sts(
            domain,
            old,
            dns=self.dns,
            fetcher=self.fetcher,
            now=self.clock(),
            fetch_backoff=self.config.mta_sts.fetch_backoff,
            trace=trace,
        )
        self.metrics.lookup_seconds("mta_sts", time.monotonic() - started)
        if new.error_kind == "policy" and new.error_at == new.checked_at:
            self.metrics.lookup("policy", "invalid")
        await self._store(domain, sts=new)
        if _warn_sts_downgrade(domain, old, new):
            self.metrics.downgrade("mta_sts")
        return new

    def _background_sts(self, domain: str, state: StsState | None) -> None:
        """TXT id re-check (or proactive policy refresh) while the cached policy is served."""
        if (domain, "sts") in self._inflight or self._closing:
            return
        # Only a re-check done after this state's counts as done by another server.
        replaced = state.checked_at if state is not None else 0.0
        self._branch_task(
            domain, "sts", lambda: self._lookup_sts(domain, None), newer_than=replaced
        )

    def _lock(self, domain: str) -> asyncio.Lock:
        lock = self._locks.get(domain)
        if lock is None:
            lock = self._locks[domain] = asyncio.Lock()
        return lock

    async def _store(
        self, domain: str, *, dane: DaneBranch | None = None, sts: StsState | None = None
    ) -> None:
        """Merge one branch into the entry; the other branch is kept as it is."""
        self._forget_memos(domain)
        lock = self._lock(domain)
        async with lock:
            # Read-modify-write: start from the stored entry, not a possibly older hot copy.
            stored = await (
                self.cache.get_fresh(domain) if self.cache.shared else self.cache.get(domain)
            )
            entry = stored or CacheEntry(domain=domain, used_at=self.clock())
            if dane is not None:
                entry = replace(entry, dane=dane)
            if sts is not None:
                entry = replace(entry, sts=sts)
            await self.cache.put(entry)
        if not lock.locked() and self._locks.get(domain) is lock:
            del self._locks[domain]

    # --- refresh-ahead -------------------------------------------------------------------

    def _consider_refresh(
        self, domain: str, checked_at: float, expires_at: float, now: float
    ) -> float:
        """Queue a used DANE branch whose remaining life is under ``refresh_before``.

        Returns when the branch enters its refresh window (``expires_at`` without refresh).
        """
        cfg = self.config.cache
        if not cfg.refresh_ahead:
            return expires_at
        lifetime = max(expires_at - checked_at, 1.0)
        start = expires_at - lifetime * cfg.refresh_before
        if now < start or domain in self._refresh or self._closing:
            return start if now < start else now
        spread = max(expires_at - now, 0.0) * REFRESH_JITTER_SHARE
        due = now + random.uniform(0, spread)
        self._refresh[domain] = _RefreshState(due=due, checked_at=checked_at)
        self._refresh_wakeup.set()
        return now

    async def _refresh_loop(self) -> None:
        while True:
            now = self.clock()
            due = [d for d, s in self._refresh.items() if s.due <= now]
            for domain in due:
                await self._refresh_slots.acquire()
                task = asyncio.create_task(self._refresh_one(domain), name=f"refresh:{domain}")
                self._background.add(task)
                task.add_done_callback(self._refresh_done)
            pending = [s.due for d, s in self._refresh.items() if d not in due]
            delay = min([*pending, now + 1.0]) - now
            self._refresh_wakeup.clear()
            try:
                async with asyncio.timeout(max(delay, 0.01)):
                    await self._refresh_wakeup.wait()
            except TimeoutError:
                pass

    def _refresh_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        self._refresh_slots.release()

    async def _refresh_one(self, domain: str) -> None:
        state = self._refresh.get(domain)
        if state is None:
            return
        state.due = float("inf")  # not picked again while running
        lease = f"refresh:{domain}"
        shared = self.cache.shared
        if shared and not await self.cache.acquire_lease(lease, self.owner, 60.0):
            self._refresh.pop(domain, None)  # another server refreshes it
            self.metrics.refresh("skipped")
            return
        try:
            entry = await (self.cache.get_fresh(domain) if shared else self.cache.get(domain))
            if (
                entry is not None
                and entry.dane is not None
                and entry.dane.checked_at > state.checked_at
            ):
                self._refresh.pop(domain, None)  # another server refreshed it meanwhile
                self.metrics.refresh("skipped")
                return
            old = entry.dane.result if entry is not None and entry.dane is not None else None
            result = await self._await(
                self._branch_task(
                    domain,
                    "dane",
                    lambda: self._lookup_dane(domain, None),
                    newer_than=state.checked_at,
                )
            )
            if result.level is DaneLevel.TEMP:
                self.metrics.refresh("failure")
                state.failures += 1
                retry = min(REFRESH_RETRY_S * 2 ** (state.failures - 1), REFRESH_RETRY_MAX_S)
                expires = entry.dane.expires_at if entry is not None and entry.dane else 0.0
                if self.clock() + retry < expires:
                    state.due = self.clock() + retry
                    log.info(
                        "%s: refresh failed (%s); retry in %.0fs", domain, result.reason, retry
                    )
                    return
                log.warning(
                    "%s: refresh failed (%s); cached DANE result expires", domain, result.reason
                )
            elif old is not None and _dane_rank(result.level) < _dane_rank(old.level):
                self.metrics.downgrade("dane")
                log.warning(
                    "%s: policy downgrade during refresh: DANE %s -> %s (%s)",
                    domain,
                    old.level.value,
                    result.level.value,
                    result.reason,
                )
            if result.level is not DaneLevel.TEMP:
                self.metrics.refresh("success")
            self._refresh.pop(domain, None)
        finally:
            if shared:
                await self.cache.release_lease(lease, self.owner)


def _answer_kind(reply: str) -> str:
    """The metric label of a reply: the level for OK, else the status word, lowercased."""
    if reply.startswith("OK "):
        return reply[3:].split(" ", 1)[0]
    return reply.split(" ", 1)[0].lower()


def _dane_rank(level: DaneLevel) -> int:
    return {DaneLevel.DANE_ONLY: 2, DaneLevel.DANE: 1}.get(level, 0)


def _warn_sts_downgrade(domain: str, old: StsState | None, new: StsState) -> bool:
    """Log (and count) an enforce policy that is no longer enforce."""
    before = old.policy.mode if old is not None and old.policy is not None else None
    after = new.policy.mode if new.policy is not None else None
    if before is not Mode.ENFORCE or after is Mode.ENFORCE:
        return False
    log.warning(
        "%s: policy downgrade: MTA-STS enforce -> %s",
        domain,
        after.value if after is not None else "no policy",
    )
    return True


__all__ = ["PolicyService", "Resolution", "Verdict"]
