"""Refresh-ahead: re-look-up used DANE results before they expire, in the background.

A query whose plan says ``refresh_dane`` (a used DANE branch in its refresh window, see
``plan.plan_answer``) queues its domain here. The refresh is due at a random point in the
first ``REFRESH_JITTER_SHARE`` of the remaining lifetime, so entries cached together are
not refreshed together, and at most ``cache.refresh_concurrency`` run at once. With a
shared cache one server refreshes a domain (an ``exclusive`` lease) and a branch already
refreshed by another server is skipped. A failed refresh keeps the cached result and is
retried with doubling delays (``plan.refresh_retry_delay``) while that result lives; a
downgrade (``dane-only`` to ``dane`` or none) is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tlspolicy.cache.coordination import Coordinator
from tlspolicy.dane.result import DaneLevel
from tlspolicy.decision.plan import refresh_retry_delay
from tlspolicy.metrics.sink import NULL_METRICS, MetricsSink
from tlspolicy.service.lookups import BranchLookups, shielded

log = logging.getLogger("tlspolicy.service")

# A refresh is spread over this share of the branch's remaining lifetime.
REFRESH_JITTER_SHARE = 0.5
# How long one server holds a domain's refresh lease.
REFRESH_LEASE_S = 60.0
_DANE_RANK = {DaneLevel.DANE_ONLY: 2, DaneLevel.DANE: 1}


@dataclass(slots=True)
class _Queued:
    due: float
    checked_at: float  # the DANE branch this refresh replaces (another server may be newer)
    failures: int = 0


class RefreshAhead:
    def __init__(
        self,
        lookups: BranchLookups,
        coordinator: Coordinator,
        *,
        concurrency: int,
        clock: Callable[[], float] = time.time,
        metrics: MetricsSink = NULL_METRICS,
    ) -> None:
        self.lookups = lookups
        self.coordinator = coordinator
        self.clock = clock
        self.metrics = metrics
        self._queued: dict[str, _Queued] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._wakeup = asyncio.Event()
        self._running: set[asyncio.Task[Any]] = set()
        self._closing = False

    def __contains__(self, domain: str) -> bool:
        return domain in self._queued

    def consider(self, domain: str, checked_at: float, expires_at: float) -> None:
        """Queue ``domain`` (a used DANE branch in its refresh window) unless queued."""
        if domain in self._queued or self._closing:
            return
        now = self.clock()
        spread = max(expires_at - now, 0.0) * REFRESH_JITTER_SHARE
        self._queued[domain] = _Queued(due=now + random.uniform(0, spread), checked_at=checked_at)
        self._wakeup.set()

    async def run(self) -> None:
        """The scheduler loop (a background task until ``aclose``)."""
        while True:
            now = self.clock()
            due = [d for d, q in self._queued.items() if q.due <= now]
            for domain in due:
                await self._slots.acquire()
                task = asyncio.create_task(self._refresh(domain), name=f"refresh:{domain}")
                self._running.add(task)
                task.add_done_callback(self._finished)
            pending = [q.due for d, q in self._queued.items() if d not in due]
            delay = min([*pending, now + 1.0]) - now
            self._wakeup.clear()
            try:
                async with asyncio.timeout(max(delay, 0.01)):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        self._slots.release()

    async def _refresh(self, domain: str) -> None:
        queued = self._queued.get(domain)
        if queued is None:
            return
        queued.due = float("inf")  # not picked again while running
        async with self.coordinator.exclusive(f"refresh:{domain}", REFRESH_LEASE_S) as mine:
            if not mine:
                self._queued.pop(domain, None)  # another server refreshes it
                self.metrics.refresh("skipped")
                return
            await self._refresh_held(domain, queued)

    async def _refresh_held(self, domain: str, queued: _Queued) -> None:
        if not self.lookups.dns_trusted():
            # A resolver that does not validate would "refresh" DANE away: wait for it.
            queued.due = self.clock() + refresh_retry_delay(1)
            return
        entry = await self.coordinator.read(domain)
        branch = entry.dane if entry is not None else None
        if branch is not None and branch.checked_at > queued.checked_at:
            self._queued.pop(domain, None)  # another server refreshed it meanwhile
            self.metrics.refresh("skipped")
            return
        task = self.lookups.dane(domain, newer_than=queued.checked_at)
        result = await shielded(task)
        if result.level is DaneLevel.TEMP:
            self.metrics.refresh("failure")
            queued.failures += 1
            retry = refresh_retry_delay(queued.failures)
            expires = branch.expires_at if branch is not None else 0.0
            if self.clock() + retry < expires:
                queued.due = self.clock() + retry
                log.info("%s: refresh failed (%s); retry in %.0fs", domain, result.reason, retry)
                return
            log.warning(
                "%s: refresh failed (%s); cached DANE result expires", domain, result.reason
            )
        else:
            old = branch.result if branch is not None else None
            if old is not None and _DANE_RANK.get(result.level, 0) < _DANE_RANK.get(old.level, 0):
                self.metrics.downgrade("dane")
                log.warning(
                    "%s: policy downgrade during refresh: DANE %s -> %s (%s)",
                    domain,
                    old.level.value,
                    result.level.value,
                    result.reason,
                )
            self.metrics.refresh("success")
        self._queued.pop(domain, None)

    async def aclose(self) -> None:
        self._closing = True
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
