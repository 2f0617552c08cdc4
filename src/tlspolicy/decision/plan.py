"""The cache plan: what one cache entry can answer now, until when, and what to look up.

Pure: ``plan_answer(entry, now, profile, settings)`` takes the cached facts and returns a
``CachePlan``; the server acts on it and ``tlspolicy query`` / ``tlspolicy cache`` print it,
so what the CLI says the server answers is what the server answers. Rules:

* DANE first (RFC 8461 §2): a fresh cached DANE result (or DANE switched off) is known; a
  missing or expired one must be looked up, and nothing is answered before it is known.
* A known ``dane``/``dane-only``/TEMP result decides alone; MTA-STS is not needed.
* Otherwise the MTA-STS view decides (``mtasts.state.sts_view``): FRESH answers from cache,
  RECHECK answers from cache and re-checks the TXT id in the background, STALE must be
  looked up first. A STALE MTA-STS lookup waits for an unknown DANE result and starts only
  when DANE says no: a DANE domain costs no ``_mta-sts`` TXT query, policy fetch or
  MTA-STS write; a domain without DANE waits for that answer on first contact (one MX
  round trip when its zone is unsigned).
* A cached answer may be reused (the server's answer memo) until the first of: ``hot_ttl``
  from now, the start of the DANE branch's refresh window (or its expiry without
  refresh-ahead), and the end of the MTA-STS view's freshness. A TEMP answer is never reused.
  Past ``hot_ttl`` (``holds_until``) only while the cache vouches that nobody else changed
  the data (``cache.quiet``).
* Refresh-ahead: a used DANE branch in the last ``refresh_before`` share of its life is
  due for a background refresh; a failed refresh is retried with doubling delays while the
  cached result lives (``refresh_retry_delay``).
* With a shared cache, a lookup another server may have done already is read from the
  store: ``shared_dane`` / ``shared_sts`` say whether a stored result counts as that lookup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from tlspolicy.cache.entry import CacheEntry
from tlspolicy.config import Config, DnsFailure, MapProfile
from tlspolicy.dane.result import DaneLevel, DaneResult
from tlspolicy.decision.verdict import Decision, Verdict, decide_dane_first, decide_sts
from tlspolicy.mtasts.state import Freshness, StsState, StsView, fresh_until, sts_view

# A failed DANE refresh is retried after this delay, doubling up to the maximum (seconds).
REFRESH_RETRY_S = 30.0
REFRESH_RETRY_MAX_S = 1800.0
DANE_DISABLED = DaneResult(DaneLevel.NONE, "DANE disabled", 0)


class StsStep(StrEnum):
    """What to do about MTA-STS for one query."""

    NONE = "none"  # not needed (DANE decides), or answered from the cached view as it is
    BACKGROUND = "background"  # answer from the cached view; re-check it in the background
    LOOKUP = "lookup"  # look up first (only used when DANE says no)


@dataclass(frozen=True, slots=True)
class PlanSettings:
    """The parts of the configuration that the plan depends on."""

    dane_enabled: bool = True
    recheck_interval: float = 60.0
    temp_on_dns_failure: bool = False
    hot_ttl: float = 5.0
    refresh_ahead: bool = True
    refresh_before: float = 0.2
    lookup_tag: str = ""  # Config.lookup_tag: stored failures count only under it

    @classmethod
    def from_config(cls, config: Config) -> PlanSettings:
        return cls(
            dane_enabled=config.dane.enabled,
            recheck_interval=config.mta_sts.recheck_interval,
            temp_on_dns_failure=config.mta_sts.dns_failure is DnsFailure.TEMP,
            hot_ttl=config.cache.hot_ttl,
            refresh_ahead=config.cache.refresh_ahead,
            refresh_before=config.cache.refresh_before,
            lookup_tag=config.lookup_tag(),
        )


@dataclass(frozen=True, slots=True)
class CachePlan:
    """What to answer from cache and what to look up.

    Attributes:
        decision: the answer from cached data alone, or None: wait for the lookups.
        reusable_until: ``decision`` may be reused until then (0: do not reuse it): the
            first of ``holds_until`` and ``hot_ttl`` from now.
        dane: the known DANE result (cached, or DANE disabled); None: look DANE up.
        sts: the MTA-STS step.
        view: the MTA-STS view of the cached state (what a cached answer applies).
        refresh_dane: the cached DANE branch is due for a refresh-ahead.
        holds_until: until when the cached data alone keeps ``decision`` (0: not reusable);
            past ``reusable_until`` only while the data is known unchanged (``cache.quiet``).
    """

    decision: Decision | None
    reusable_until: float
    dane: DaneResult | None
    sts: StsStep
    view: StsView
    refresh_dane: bool = False
    holds_until: float = 0.0

    @property
    def lookups(self) -> tuple[str, ...]:
        """The lookups this plan waits for or starts, for logs and the CLI."""
        names: tuple[str, ...] = () if self.dane is not None else ("dane",)
        if self.sts is StsStep.LOOKUP:
            names += ("mta-sts",)
        elif self.sts is StsStep.BACKGROUND:
            names += ("mta-sts re-check",)
        return names

    def describe(self) -> str:
        """One line: the cached answer, or what the next query does instead."""
        if self.decision is None:
            return f"(the next query looks up: {', '.join(self.lookups)})"
        return self.decision.verdict.value


def plan_answer(
    entry: CacheEntry | None, now: float, profile: MapProfile, settings: PlanSettings
) -> CachePlan:
    """The plan for one query of ``entry``'s domain (``entry`` None: nothing cached)."""
    domain = entry.domain if entry is not None else ""
    state = entry.sts if entry is not None else None
    view = sts_view(state, now, recheck_interval=settings.recheck_interval, tag=settings.lookup_tag)
    until = math.inf
    refresh = False
    dane: DaneResult | None = None
    if not settings.dane_enabled:
        dane = DANE_DISABLED
    elif entry is not None and entry.dane is not None and entry.dane.fresh(now):
        dane = entry.dane.result
        start = refresh_window_start(
            entry.dane.checked_at, entry.dane.expires_at, settings.refresh_before
        )
        if not settings.refresh_ahead:
            until = min(until, entry.dane.expires_at)
        elif now < start:
            until = min(until, start)
        else:
            refresh, until = True, now
    if dane is not None and dane.level is not DaneLevel.NONE:
        decision = decide_dane_first(domain, dane, None, profile)
        return _reused(
            decision, until, now, settings, dane=dane, step=StsStep.NONE, view=view, refresh=refresh
        )
    if view.freshness is Freshness.STALE:
        return CachePlan(None, 0.0, dane, StsStep.LOOKUP, view, refresh)
    step = StsStep.BACKGROUND if view.freshness is Freshness.RECHECK else StsStep.NONE
    if dane is None:
        return CachePlan(None, 0.0, None, step, view, refresh)
    decision = decide_sts(domain, view, profile, temp_on_dns_failure=settings.temp_on_dns_failure)
    until = min(until, fresh_until(state, now, recheck_interval=settings.recheck_interval))
    return _reused(decision, until, now, settings, dane=dane, step=step, view=view, refresh=refresh)


def decide_live(
    domain: str,
    dane: DaneResult,
    state: StsState | None,
    *,
    now: float,
    profile: MapProfile,
    settings: PlanSettings,
) -> Decision:
    """The decision once the lookups a plan asked for are done (``state``: the MTA-STS
    state after its lookup, or the cached one when none was needed)."""
    if dane.level is not DaneLevel.NONE:
        return decide_dane_first(domain, dane, None, profile)
    view = sts_view(state, now, recheck_interval=settings.recheck_interval, tag=settings.lookup_tag)
    return decide_sts(domain, view, profile, temp_on_dns_failure=settings.temp_on_dns_failure)


def _reused(
    decision: Decision,
    holds: float,
    now: float,
    settings: PlanSettings,
    *,
    dane: DaneResult,
    step: StsStep,
    view: StsView,
    refresh: bool,
) -> CachePlan:
    """A plan that answers ``decision``, reusable while the data ``holds`` (never TEMP)."""
    if decision.verdict is Verdict.TEMP:
        holds = 0.0
    reusable = min(holds, now + settings.hot_ttl)
    return CachePlan(decision, reusable, dane, step, view, refresh, holds_until=holds)


def refresh_window_start(checked_at: float, expires_at: float, refresh_before: float) -> float:
    """When a DANE branch enters its refresh-ahead window (the last ``refresh_before``
    share of its lifetime, a lifetime counted as at least one second)."""
    lifetime = max(expires_at - checked_at, 1.0)
    return expires_at - lifetime * refresh_before


def refresh_retry_delay(failures: int) -> float:
    """The wait before retrying a refresh that failed ``failures`` times (>= 1) in a row."""
    doublings = min(max(failures, 1) - 1, 32)
    return float(min(REFRESH_RETRY_S * (1 << doublings), REFRESH_RETRY_MAX_S))


def shared_dane(entry: CacheEntry | None, now: float, *, newer_than: float) -> DaneResult | None:
    """A stored DANE result that counts as a lookup done by another server: fresh, and
    checked after ``newer_than`` (a refresh passes the time of the data it replaces)."""
    if entry is None or entry.dane is None or not entry.dane.fresh(now):
        return None
    return entry.dane.result if entry.dane.checked_at > newer_than else None


def shared_sts(
    entry: CacheEntry | None,
    now: float,
    *,
    newer_than: float,
    recheck_interval: float,
    tag: str = "",
) -> StsState | None:
    """A stored MTA-STS state that counts as a lookup done by another server: checked
    after ``newer_than`` and usable now without another lookup (not STALE)."""
    if entry is None or entry.sts is None or entry.sts.checked_at <= newer_than:
        return None
    view = sts_view(entry.sts, now, recheck_interval=recheck_interval, tag=tag)
    return None if view.freshness is Freshness.STALE else entry.sts.current(tag)
