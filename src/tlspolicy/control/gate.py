"""Overrides applied to one query, before any lookup: the outcome, its log lines, metrics.

An active override answers with its level, reusable (memo) until the first of its expiry
and ``cache.hot_ttl``; an expired one is counted, logged once and ignored; one that
weakens a domain the cache knows as DANE or MTA-STS ``enforce`` is warned about at most
every ``WEAKENING_LOG_INTERVAL_S`` per domain and listed for ``/healthz``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tlspolicy.cache.entry import CacheEntry
from tlspolicy.control.book import OverrideState, override_decision, weakens
from tlspolicy.control.store import OverrideStore
from tlspolicy.decision.outcome import Outcome, Source
from tlspolicy.metrics.sink import NULL_METRICS, MetricsSink

log = logging.getLogger("tlspolicy.service")

WEAKENING_LOG_INTERVAL_S = 60.0


class OverrideGate:
    def __init__(
        self,
        store: OverrideStore,
        read_entry: Callable[[str], Awaitable[CacheEntry | None]],
        *,
        metrics: MetricsSink = NULL_METRICS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.read_entry = read_entry
        self.metrics = metrics
        self.clock = clock
        self.weakening: dict[str, tuple[str, float]] = {}  # domain -> (what, last warning)
        self._expired_logged: set[tuple[str, float | None]] = set()

    async def outcome(self, domain: str, hot_ttl: float) -> Outcome | None:
        """The outcome an override decides for ``domain``; None: look up as usual."""
        now = self.clock()
        match = self.store.find(domain, now)
        if match is None:
            return None
        override = match.override
        self.metrics.override(match.state.value)
        if match.state is OverrideState.EXPIRED:
            if (override.domain, override.until) not in self._expired_logged:
                self._expired_logged.add((override.domain, override.until))
                log.info(
                    "%s: override %s expired at %s; looking up again",
                    domain,
                    override.postfix_level,
                    override.describe_until(),
                )
            return None
        decision = override_decision(match, domain)
        if decision is None:
            return None
        reason = override.reason or "none given"
        what = weakens(override, await self.read_entry(domain))
        if what is not None:
            _, warned = self.weakening.get(domain, ("", 0.0))
            if now - warned >= WEAKENING_LOG_INTERVAL_S:
                log.warning(
                    "%s: override %s weakens %s (reason: %s; until %s)",
                    domain,
                    override.postfix_level,
                    what,
                    reason,
                    override.describe_until(),
                )
                warned = now
            self.weakening[domain] = (what, warned)
        log.info(
            "%s: %s by override (reason: %s; until %s)",
            domain,
            override.postfix_level,
            reason,
            override.describe_until(),
        )
        until = now + hot_ttl if override.until is None else min(now + hot_ttl, override.until)
        return Outcome(decision, Source.OVERRIDE, domain, until)

    def weakening_overrides(self) -> list[dict[str, Any]]:
        """Active overrides seen weakening a DANE or MTA-STS enforce domain (/healthz)."""
        now, listed = self.clock(), []
        for domain, (what, _) in sorted(self.weakening.items()):
            match = self.store.find(domain, now)
            if match is None or override_decision(match, domain) is None:
                del self.weakening[domain]  # gone or expired: nothing to list any more
                continue
            item = match.override.to_json()
            item.update(domain=domain, weakens=what, until=match.override.describe_until())
            listed.append(item)
        return listed
