"""The running TLSRPT parts: store, batch writer, collector and reporter, started together.

``tlspolicy serve`` starts one ``TlsrptRuntime`` beside the socketmap server when
``tlsrpt.collector_socket`` is set or ``tlsrpt.reporter`` is true; ``tlspolicy tlsrpt
collect`` starts one with the collector only. Stopping flushes the batch in flight, so a
SIGTERM loses nothing; a ``kill -9`` loses at most the last ``FLUSH_INTERVAL_S``.

The clock: ``TLSPOLICY_TLSRPT_NOW`` (an ISO 8601 time, e.g. ``2026-12-01T12:00:00Z``), when
set, freezes "now" for the collector, the reporter and the CLI. It exists for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tlspolicy.config import Config
from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.errors import ConfigError, ReportStoreError
from tlspolicy.metrics.sink import NULL_TLSRPT_METRICS, TlsrptMetricsSink
from tlspolicy.tlsrpt.backend import open_store
from tlspolicy.tlsrpt.collector import Collector
from tlspolicy.tlsrpt.store import BatchWriter, ReportStore

NOW_ENV = "TLSPOLICY_TLSRPT_NOW"  # for tests: a fixed "now"
STORE_OPEN_RETRY_S = 5.0  # a store that failed to open is tried again this often
RESTART_DELAY_S = 30.0  # a TLSRPT task that died is started again after this long

log = logging.getLogger("tlspolicy.tlsrpt")


def clock_from_env() -> Callable[[], datetime]:
    """``datetime.now(UTC)``, or the fixed time in ``TLSPOLICY_TLSRPT_NOW``."""
    fixed = os.environ.get(NOW_ENV)
    if not fixed:
        return lambda: datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(fixed)
    except ValueError:
        raise ConfigError(f"{NOW_ENV}: {fixed!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return lambda: moment


async def supervised(
    name: str, run: Callable[[], Any], *, restart_s: float = RESTART_DELAY_S
) -> None:
    """Run ``run()`` forever: a crash is logged with its traceback and the task starts
    again after ``restart_s``. Each part already turns the failures it expects into log
    lines; this is for the ones nobody expected, which must not end reporting silently."""
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("TLSRPT %s failed; starting it again in %g s", name, restart_s)
        else:
            log.error("TLSRPT %s stopped; starting it again in %g s", name, restart_s)
        await asyncio.sleep(restart_s)


class TlsrptRuntime:
    """Store + writer + collector (+ reporter), from one ``Config``."""

    def __init__(
        self,
        config: Config,
        *,
        collect: bool = True,
        report: bool = True,
        dns: DnsClient | None = None,
        metrics: TlsrptMetricsSink = NULL_TLSRPT_METRICS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        cfg = config.tlsrpt
        self.clock = clock or clock_from_env()
        self.store: ReportStore = open_store(cfg)
        self.writer = BatchWriter(self.store, clock=self.clock)
        self.collector: Collector | None = None
        if collect and cfg.collector_socket is not None:
            self.collector = Collector(cfg, self.writer, metrics=metrics)
        self.reporter: Any = None
        if report and cfg.reporter:
            if dns is None:
                raise ValueError("the reporter needs a DNS client")
            from tlspolicy.tlsrpt.reporter import Reporter  # noqa: PLC0415

            self.reporter = Reporter(cfg, self.store, dns, metrics=metrics, clock=self.clock)
        # Reports others send us (inbound_*.py): the HTTPS endpoint and the metrics.
        self.inbound_endpoint: Any = None
        self.inbound_counter: Any = None
        if cfg.inbound:
            from tlspolicy.tlsrpt.inbound_http import InboundEndpoint  # noqa: PLC0415
            from tlspolicy.tlsrpt.inbound_metrics import InboundCounter  # noqa: PLC0415

            if cfg.inbound_listen is not None:
                self.inbound_endpoint = InboundEndpoint(cfg, self.store, metrics)
            self.inbound_counter = InboundCounter(
                self.store, metrics, cfg.inbound_domains, keep_days=cfg.inbound_keep_days
            )
        self._tasks: list[asyncio.Task[Any]] = []
        self.store_open = False
        self.open_retry_s = STORE_OPEN_RETRY_S

    @property
    def enabled(self) -> bool:
        return (
            self.collector is not None
            or self.reporter is not None
            or self.inbound_counter is not None
        )

    def bind(self) -> None:
        """Create the collector socket, before privileges drop."""
        if self.collector is not None:
            self.collector.bind()
        if self.inbound_endpoint is not None:
            self.inbound_endpoint.bind()

    async def start(self) -> None:
        """Open the store and start reading and reporting.

        A store that cannot be opened (PostgreSQL down, a broken path) is logged and retried
        every ``open_retry_s`` in the background: the socketmap server must not fail because
        of TLSRPT, and the collector keeps counting in memory meanwhile.
        """
        try:
            await self.store.open()
            self.store_open = True
        except ReportStoreError as exc:
            log.error("TLSRPT store unavailable, counting in memory until it opens: %s", exc)
            self._tasks.append(asyncio.create_task(self._open_later(), name="tlsrpt-open"))
        if self.collector is not None:
            self.collector.start()
            self._tasks.append(
                asyncio.create_task(supervised("writer", self.writer.run), name="tlsrpt-writer")
            )
        if self.inbound_counter is not None:
            self._tasks.append(
                asyncio.create_task(
                    supervised("inbound metrics", self.inbound_counter.run),
                    name="tlsrpt-inbound-metrics",
                )
            )
        if self.inbound_endpoint is not None:
            await self.inbound_endpoint.start()
        if self.reporter is not None:
            if (unsigned := self.config.tlsrpt.unsigned_mail) is not None:
                log.warning("TLSRPT: %s", unsigned)
            self._tasks.append(
                asyncio.create_task(
                    supervised("reporter", self.reporter.run), name="tlsrpt-reporter"
                )
            )

    async def _open_later(self) -> None:
        while True:
            await asyncio.sleep(self.open_retry_s)
            try:
                await self.store.open()
            except ReportStoreError:
                continue
            self.store_open = True
            log.info("TLSRPT store opened")
            return

    async def aclose(self) -> None:
        if self.inbound_endpoint is not None:
            await self.inbound_endpoint.stop()
        if self.collector is not None:
            await self.collector.aclose()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.reporter is not None:
            await self.reporter.aclose()
        if not await self.writer.flush():
            log.error("TLSRPT: %d datagrams could not be stored at exit", self.writer.pending)
        await self.store.aclose()
