"""Count received reports into the metrics of ``serve``, whichever process stored them.

``tlspolicy tlsrpt receive`` runs once per mail (Postfix's pipe) and ``import`` by hand:
their counts cannot live in their own memory. So ``serve`` follows the store's
``tlsrpt_inbound`` log by id, every ``POLL_INTERVAL_S``, and counts each new row once:
reports by transport and verdict, and for accepted ones their sessions and failures by
policy domain and result type. It starts from the newest row at start-up (counters start
at zero, as Prometheus expects of a restart). With a shared PostgreSQL store every
``serve`` counts every host's reports: alert on ``max`` over the hosts, not ``sum``.

Policy domains outside ``tlsrpt.inbound_domains`` are counted as ``other`` (label values
never come from what a sender wrote).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from tlspolicy.errors import ReportStoreError
from tlspolicy.metrics.sink import OTHER, TlsrptMetricsSink
from tlspolicy.tlsrpt.inbound import Verdict
from tlspolicy.tlsrpt.store import ReceivedFailure, ReceivedPolicy, ReportStore

POLL_INTERVAL_S = 15.0
PURGE_INTERVAL_S = 3600.0  # received reports older than tlsrpt.inbound_keep_days go
SECONDS_PER_DAY = 86400.0
POLL_BATCH = 1000  # log rows read per query

log = logging.getLogger("tlspolicy.tlsrpt.inbound")


def domain_label(domain: str, own: frozenset[str]) -> str:
    """``domain`` when it is one of ours (or below one), else ``other``."""
    for name in own:
        if domain == name or domain.endswith("." + name):
            return name
    return OTHER


def count_rows(
    metrics: TlsrptMetricsSink,
    policies: Iterable[ReceivedPolicy],
    failures: Iterable[ReceivedFailure],
    own: frozenset[str],
) -> None:
    for p in policies:
        label = domain_label(p.domain, own)
        metrics.tlsrpt_inbound_sessions(label, "successful", p.successful)
        metrics.tlsrpt_inbound_sessions(label, "failed", p.failed)
    for f in failures:
        metrics.tlsrpt_inbound_failures(domain_label(f.domain, own), f.result_type, f.count)


class InboundCounter:
    """Follows the store's inbound log (see the module doc)."""

    def __init__(
        self,
        store: ReportStore,
        metrics: TlsrptMetricsSink,
        domains: Iterable[str],
        *,
        keep_days: int | None = None,
        interval: float = POLL_INTERVAL_S,
    ) -> None:
        self.keep_days = keep_days
        self.store = store
        self.metrics = metrics
        self.own = frozenset(domains)
        self.interval = interval
        self.last: int | None = None

    async def poll(self) -> int:
        """Count the rows stored since the last poll; returns how many."""
        if self.last is None:
            self.last = await self.store.last_inbound_id()
            return 0
        counted = 0
        while events := await self.store.inbound_events(self.last, POLL_BATCH):
            upto = events[-1].id
            for event in events:
                self.metrics.tlsrpt_inbound_report(event.transport, event.verdict)
            if any(e.verdict == Verdict.ACCEPTED for e in events):
                policies, failures = await self.store.received_rows(self.last, upto)
                count_rows(self.metrics, policies, failures, self.own)
            self.last = upto
            counted += len(events)
        return counted

    async def run(self) -> None:
        """Poll forever; also drop what is older than ``keep_days`` every hour."""
        failing = False
        next_purge = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.poll()
                if self.keep_days is not None and loop.time() >= next_purge:
                    next_purge = loop.time() + PURGE_INTERVAL_S
                    cutoff = time.time() - self.keep_days * SECONDS_PER_DAY
                    await self.store.purge_inbound_before(cutoff)
                failing = False
            except ReportStoreError as exc:
                if not failing:
                    log.error("TLSRPT inbound metrics: cannot read the store: %s", exc)
                failing = True
            await asyncio.sleep(self.interval)
