"""The two lookup branches, coalesced, run once across servers, and stored.

``BranchLookups.dane(domain)`` and ``.sts(domain)`` return the task of the one lookup of
that domain and branch in flight in this process, starting it if needed; with a shared
cache the lookup runs through ``Coordinator.run_once``, so another server's fresh result is
taken instead of looking up again. Results are merged into the cache entry (DANE TEMP is
never stored, and nothing is stored while ``dns_trusted()`` says the resolver is known not
to validate: such answers make every domain look unsigned and would outlive the repair),
counted, and an MTA-STS ``enforce`` policy that stops being enforced is
logged as a downgrade. Here both branches meet, so drift (``drift``: an enforce policy that
does not cover a current MX host, a dane-only domain whose MX turned insecure) is logged at
warning once per change and counted. Callers await the tasks through ``shielded``: a
caller that gives up (time-out, disconnect) must not cancel a lookup that others wait for,
nor lose its result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tlspolicy.cache.coordination import Coordinator
from tlspolicy.cache.entry import DaneBranch
from tlspolicy.config import Config
from tlspolicy.control.drift import new_drift
from tlspolicy.dane.lookup import lookup_dane
from tlspolicy.dane.result import DaneLevel, DaneResult
from tlspolicy.decision.plan import shared_dane, shared_sts
from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.metrics.sink import NULL_METRICS, MetricsSink
from tlspolicy.mtasts.lookup import Fetcher, refresh_sts
from tlspolicy.mtasts.policy import Mode
from tlspolicy.mtasts.state import StsErrorKind, StsState

log = logging.getLogger("tlspolicy.service")
T = TypeVar("T")


async def shielded(task: asyncio.Task[T]) -> T:
    """Await ``task`` without cancelling it when the waiter is cancelled."""
    return await asyncio.shield(task)


class BranchLookups:
    def __init__(
        self,
        config: Config,
        *,
        dns: DnsClient,
        fetcher: Fetcher,
        coordinator: Coordinator,
        clock: Callable[[], float] = time.time,
        metrics: MetricsSink = NULL_METRICS,
        on_stored: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.dns = dns
        self.fetcher = fetcher
        self.coordinator = coordinator
        self.clock = clock
        self.metrics = metrics
        self.on_stored = on_stored
        self._inflight: dict[tuple[str, str], asyncio.Task[Any]] = {}
        # False while the resolver self-check finds a resolver that does not validate.
        self.dns_trusted: Callable[[], bool] = lambda: True

    def inflight(self, domain: str, branch: str) -> asyncio.Task[Any] | None:
        return self._inflight.get((domain, branch))

    def dane(self, domain: str, *, newer_than: float = 0.0) -> asyncio.Task[DaneResult]:
        """The DANE lookup of ``domain``; ``newer_than``: only a stored result checked
        after it counts as another server's lookup (a refresh passes the data it replaces)."""

        def done(entry: Any) -> DaneResult | None:
            return shared_dane(entry, self.clock(), newer_than=newer_than)

        return self._task(domain, "dane", lambda: self._dane(domain), done)

    def sts(self, domain: str, *, newer_than: float = 0.0) -> asyncio.Task[StsState]:
        """The MTA-STS lookup (TXT re-check, fetch when needed) of ``domain``."""
        interval = self.config.mta_sts.recheck_interval
        tag = self.config.lookup_tag()

        def done(entry: Any) -> StsState | None:
            return shared_sts(
                entry, self.clock(), newer_than=newer_than, recheck_interval=interval, tag=tag
            )

        return self._task(domain, "sts", lambda: self._sts(domain), done)

    def _task(
        self,
        domain: str,
        branch: str,
        lookup: Callable[[], Awaitable[T]],
        done: Callable[[Any], T | None],
    ) -> asyncio.Task[T]:
        key = (domain, branch)
        task = self._inflight.get(key)
        if task is None:
            work = self.coordinator.run_once(f"lookup:{branch}:{domain}", domain, lookup, done)
            task = asyncio.create_task(work, name=f"{branch}:{domain}")
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        return task

    async def _dane(self, domain: str) -> DaneResult:
        cfg = self.config
        started = time.monotonic()
        result = await lookup_dane(
            domain,
            self.dns,
            concurrency=cfg.dns.concurrency,
            min_ttl=cfg.dane.min_ttl,
            max_ttl=cfg.dane.max_ttl,
            negative_ttl=cfg.dane.negative_ttl,
        )
        self.metrics.lookup_seconds("dane", time.monotonic() - started)
        if result.level is not DaneLevel.TEMP and self.dns_trusted():  # TEMP is never cached
            now = self.clock()
            await self._merge(domain, dane=DaneBranch(result, now, now + result.ttl))
        return result

    async def _sts(self, domain: str) -> StsState:
        async with self.coordinator.locked(domain):
            entry = await self.coordinator.cache.get(domain)
            old = entry.sts if entry is not None else None
        started = time.monotonic()
        new = await refresh_sts(
            domain,
            old,
            dns=self.dns,
            fetcher=self.fetcher,
            now=self.clock(),
            fetch_backoff=self.config.mta_sts.fetch_backoff,
            tag=self.config.lookup_tag(),
        )
        self.metrics.lookup_seconds("mta_sts", time.monotonic() - started)
        if new.error_kind == StsErrorKind.POLICY and new.error_at == new.checked_at:
            self.metrics.lookup("policy", "invalid")
        if not self.dns_trusted():
            return new
        await self._merge(domain, sts=new)
        if sts_downgraded(domain, old, new):
            self.metrics.downgrade("mta_sts")
        return new

    async def _merge(
        self, domain: str, *, dane: DaneBranch | None = None, sts: StsState | None = None
    ) -> None:
        if self.on_stored is not None:
            self.on_stored(domain)  # answers derived from the old data no longer hold
        old = await self.coordinator.cache.get(domain)
        new = await self.coordinator.merge(domain, dane=dane, sts=sts)
        for drift in new_drift(old, new):
            self.metrics.drift(drift.kind)
            log.warning("%s: policy drift: %s", domain, drift.detail)

    async def aclose(self) -> None:
        pending = list(self._inflight.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def sts_downgraded(domain: str, old: StsState | None, new: StsState) -> bool:
    """Log an ``enforce`` policy that is no longer ``enforce``; True if it happened."""
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
