"""Map name + key → ``Outcome``: the cache plan, the lookups it asks for, refresh-ahead.

Flow for one query (``answer``):
1. The key becomes a policy domain (``socketmap.keys``) and the map name a profile; an
   active operator override decides before any lookup (``overrides/gate.py``).
2. The cache entry is read from the in-process hot layer (no network for cached domains),
   and ``plan.plan_answer`` says what it answers and what must be looked up.
3. A plan with a decision answers at once (and queues refresh-ahead or an MTA-STS re-check
   in the background when it says so). With a shared cache, a plan that would look up is
   made again from the shared store first: another server may have looked up already.
4. Otherwise the lookups start together (``lookups.BranchLookups``: coalesced, once across
   servers); a DANE verdict is answered as soon as it is known, and an MTA-STS lookup goes
   on in the background to fill the cache.

The socketmap edge (``server.answers``) formats the outcome, applies shadow mode and keeps
the answer memo.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from tlspolicy.cache.coordination import Coordinator
from tlspolicy.cache.entry import CacheEntry
from tlspolicy.cache.store import PolicyCache
from tlspolicy.config import Config, MapProfile
from tlspolicy.control.gate import OverrideGate
from tlspolicy.control.store import OverrideStore
from tlspolicy.dane.result import DaneLevel
from tlspolicy.decision.outcome import Outcome, Resolution, Source
from tlspolicy.decision.plan import CachePlan, PlanSettings, StsStep, decide_live, plan_answer
from tlspolicy.decision.verdict import Decision, Verdict
from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.metrics.sink import NULL_METRICS, MetricsSink
from tlspolicy.mtasts.lookup import Fetcher
from tlspolicy.mtasts.state import StsState, sts_view
from tlspolicy.service.lookups import BranchLookups, shielded
from tlspolicy.service.refresh import RefreshAhead
from tlspolicy.socketmap.keys import normalize_key

log = logging.getLogger("tlspolicy.service")


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
        overrides: OverrideStore | None = None,
    ) -> None:
        self.config = config
        self.settings = PlanSettings.from_config(config)
        self.metrics = metrics
        self.cache = cache
        self.clock = clock
        self.coordinator = Coordinator(cache, lease_ttl=config.server.request_timeout, clock=clock)
        self.on_stored: list[Callable[[str], None]] = []
        # Another process wrote (a purge, another worker): no memo is known to hold.
        cache.on_changed_elsewhere.append(lambda: self._stored(""))
        self.lookups = BranchLookups(
            config,
            dns=dns,
            fetcher=fetcher,
            coordinator=self.coordinator,
            clock=clock,
            metrics=metrics,
            on_stored=self._stored,
        )
        self.refresh = RefreshAhead(
            self.lookups,
            self.coordinator,
            concurrency=config.cache.refresh_concurrency,
            clock=clock,
            metrics=metrics,
        )
        self.overrides = overrides or OverrideStore(None, config.overrides)
        self.overrides.on_change.append(lambda: self._stored(""))
        self.gate = OverrideGate(self.overrides, cache.get, metrics=metrics, clock=clock)
        self._background: set[asyncio.Task[Any]] = set()
        self._closing = False

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background work: refresh-ahead, cache maintenance, override re-reads."""
        if self.overrides.backend is not None:
            await self.overrides.load()
            self._spawn(self.overrides.run(), "override-reload")
        if self.config.cache.refresh_ahead:
            self._spawn(self.refresh.run(), "refresh-ahead")
        self._spawn(self.cache.run_maintenance(), "cache-maintenance")
        self._spawn(self.cache.run_quiet_checks(), "cache-quiet-checks")

    def reconfigure(self, config: Config) -> None:
        """Take new maps/timeouts (SIGHUP); backends and listeners stay as they are."""
        self.config = self.lookups.config = config
        self.settings = PlanSettings.from_config(config)
        self.overrides.set_configured(config.overrides)
        for listener in self.on_stored:
            listener("")

    async def aclose(self) -> None:
        self._closing = True
        await self.refresh.aclose()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.lookups.aclose()

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _stored(self, domain: str) -> None:
        for listener in self.on_stored:
            listener(domain)

    # --- answering ---------------------------------------------------------------------

    async def answer(self, name: str, key: str) -> Outcome:
        """The outcome of one socketmap request; never raises (internal errors are TEMP)."""
        profile = self.config.profile(name)
        if profile is None:
            return Outcome(Decision(Verdict.PERM, "", f"unknown map {name}"), Source.UNKNOWN_MAP)
        parsed = normalize_key(key)
        if parsed.domain is None:
            log.debug("%s %r: NOTFOUND (%s)", name, key, parsed.why)
            return Outcome(Decision(Verdict.NOTFOUND, "", parsed.why), Source.NO_LOOKUP)
        domain = parsed.domain
        overridden = await self.gate.outcome(domain, self.settings.hot_ttl)
        if overridden is not None:
            return overridden
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.server.request_timeout):
                resolution = await self.resolve(domain, profile)
        except TimeoutError:
            timeout = self.config.server.request_timeout
            log.warning(
                "%s: no answer within %.1fs", domain, timeout,
                extra=log_fields(
                    domain, name, Verdict.TEMP, Source.TIMEOUT, duration_ms=timeout * 1000
                ),
            )  # fmt: skip
            return Outcome(
                Decision(Verdict.TEMP, domain, "policy lookup timed out"), Source.TIMEOUT, domain
            )
        except Exception:
            log.exception("%s: internal error", domain)
            return Outcome(Decision(Verdict.TEMP, domain, "internal error"), Source.ERROR, domain)
        decision = resolution.decision
        if resolution.source is Source.LIVE:
            elapsed = (time.monotonic() - started) * 1000
            log.info(
                "%s: %s (%s) in %.1f ms", domain, decision.verdict.value, decision.reason, elapsed,
                extra=log_fields(
                    domain, name, decision.verdict, resolution.source,
                    duration_ms=elapsed, reason=decision.reason,
                ),
            )  # fmt: skip
        elif log.isEnabledFor(logging.DEBUG):  # the hot path builds no fields it drops
            log.debug(
                "%s: %s from cache", domain, decision.verdict.value,
                extra=log_fields(domain, name, decision.verdict, resolution.source),
            )  # fmt: skip
        return Outcome(
            decision, resolution.source, domain, resolution.reusable_until, resolution.holds_until
        )

    def weakening_overrides(self) -> list[dict[str, Any]]:
        """Active overrides seen weakening a DANE or MTA-STS enforce domain (/healthz)."""
        return self.gate.weakening_overrides()

    # --- resolution --------------------------------------------------------------------

    async def plan(
        self, domain: str, profile: MapProfile, now: float
    ) -> tuple[CachePlan, CacheEntry | None]:
        """The cache plan for ``domain`` and the entry it was made from; from the shared
        store when the in-process copy would look up."""
        entry = await self.cache.get(domain)
        plan = plan_answer(entry, now, profile, self.settings)
        if plan.decision is None and self.cache.shared:
            # Another server may have done this lookup already: ask the shared store, not
            # our in-process copy (the hot path above stays free of network round trips).
            entry = await self.cache.get_fresh(domain)
            plan = plan_answer(entry, now, profile, self.settings)
        return plan, entry

    async def resolve(self, domain: str, profile: MapProfile) -> Resolution:
        now = self.clock()
        plan, entry = await self.plan(domain, profile, now)
        self.cache.note_use(domain, now)
        state = entry.sts if entry is not None else None
        if plan.refresh_dane and entry is not None and entry.dane is not None:
            self.refresh.consider(domain, entry.dane.checked_at, entry.dane.expires_at)
        dane = plan.dane
        if plan.decision is not None and dane is not None:
            if dane.level is not DaneLevel.NONE:
                return Resolution(
                    domain,
                    plan.decision,
                    Source.CACHE,
                    dane,
                    reusable_until=plan.reusable_until,
                    holds_until=plan.holds_until,
                )
            if plan.sts is StsStep.BACKGROUND:
                self._recheck(domain, state)
            return Resolution(
                domain,
                plan.decision,
                Source.CACHE,
                dane,
                plan.view,
                state,
                reusable_until=plan.reusable_until,
                holds_until=plan.holds_until,
            )
        if dane is None:
            dane = await shielded(self.lookups.dane(domain))
        now = self.clock()
        if dane.level is not DaneLevel.NONE:
            decision = decide_live(
                domain, dane, None, now=now, profile=profile, settings=self.settings
            )
            return Resolution(domain, decision, Source.LIVE, dane=dane)
        if plan.sts is StsStep.LOOKUP:  # only now: DANE first, and no MTA-STS work for DANE
            state = await shielded(self.lookups.sts(domain))
            now = self.clock()
        elif plan.sts is StsStep.BACKGROUND:
            self._recheck(domain, state)
        decision = decide_live(
            domain, dane, state, now=now, profile=profile, settings=self.settings
        )
        view = sts_view(
            state, now, recheck_interval=self.settings.recheck_interval,
            tag=self.settings.lookup_tag,
        )  # fmt: skip
        return Resolution(domain, decision, Source.LIVE, dane, view, state)

    async def sts_for_display(self, domain: str) -> StsState:
        """The MTA-STS state when DANE decided (``tlspolicy query``): the lookup already
        started in the background if there is one, else a new one."""
        task = self.lookups.inflight(domain, "sts")
        if task is not None:
            state: StsState = await shielded(task)
            return state
        entry = await self.cache.get(domain)  # the background lookup may be done already
        if entry is not None and entry.sts is not None:
            return entry.sts
        return await shielded(self.lookups.sts(domain))

    def _recheck(self, domain: str, state: StsState | None) -> None:
        """TXT id re-check (or proactive policy refresh) while the cached policy is served."""
        if self.lookups.inflight(domain, "sts") is not None or self._closing:
            return
        # Only a re-check done after this state's counts as done by another server.
        self.lookups.sts(domain, newer_than=state.checked_at if state is not None else 0.0)


__all__ = ["Outcome", "PolicyService", "Resolution", "Source", "Verdict"]


def log_fields(
    domain: str,
    map_name: str,
    verdict: Verdict,
    source: Source,
    *,
    duration_ms: float | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The ``extra=`` of a lookup's log line: separate fields for JSON logs (Loki, Elastic
    query by them), named as ``server/logsetup.py`` renders them."""
    fields: dict[str, Any] = {
        "domain": domain,
        "map": map_name,
        "answer": verdict.value,
        "source": source.value,
    }
    if duration_ms is not None:
        fields["duration_ms"] = round(duration_ms, 1)
    if reason is not None:
        fields["reason"] = reason
    return fields
