"""The daily reporter: build each finished day's reports and deliver them to every rua.

Per (day, report domain), once ``schedule.due_at`` has passed:

1. Skip suppressed domains, and days without failures when ``only_with_failures`` is set.
2. Freeze the report (``store.freeze``): built once, off the event loop, and stored, so
   every destination and every retry gets the same bytes under one report id. Sessions
   stored for that day afterwards are counted as late (metric and log line), not reported.
3. Look up ``_smtp._tls.<domain>`` TXT again through the validating DNS client (the record
   Postfix saw may be a day old) and parse it strictly (``record.select_record``: it also
   caps and checks the destinations). No record, or a broken one: nothing is sent, and the
   ``dns:`` row says why (given up). A DNS failure: the ``dns:`` row is retried with
   backoff like a destination.
4. A destination the operator does not allow (an https port outside ``https_ports``, mail
   while ``mail_reports`` is off) is given up at once, with the reason stored.
5. For each other destination: ``store.claim`` (skips what was delivered, given up, not yet
   due, or leased by another reporter), send, ``store.finish`` with the outcome and the
   next attempt. Every attempt is stored; a success is never repeated.

Every recipient domain controls its record, so one domain must not hold up the others:
domains are worked on ``DOMAIN_CONCURRENCY`` at a time, the destinations of one domain
``SEND_CONCURRENCY`` at a time, and all of one domain's sends end within
``DOMAIN_DEADLINE_S``. Any exception while sending to one destination is a failed attempt
for that destination; any exception for one domain is logged and ends only that domain's
turn; ``run`` never ends but by cancellation (and ``runtime.supervised`` restarts it if it
did).

A crash between a successful send and ``finish`` is the one case that can send twice: the
lease (``LEASE_S``) expires and the destination is tried again.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tlspolicy.config.tlsrpt import TlsrptConfig
from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.dnsstub.data import TxtRecord
from tlspolicy.errors import DeliveryError, DnsError, RecordSyntaxError, ReportStoreError
from tlspolicy.metrics.sink import NULL_TLSRPT_METRICS, TlsrptMetricsSink
from tlspolicy.tlsrpt import deliver
from tlspolicy.tlsrpt.aggregate import GroupCounts, utc_day
from tlspolicy.tlsrpt.mail import DkimKey, build_message, compress
from tlspolicy.tlsrpt.record import MAX_DESTINATIONS, MAX_PER_HOST, Destination, select_record
from tlspolicy.tlsrpt.report import build_report, format_report, report_id, totals
from tlspolicy.tlsrpt.schedule import due_at, next_attempt
from tlspolicy.tlsrpt.store import FrozenReport, ReportStore

DNS_URI = "dns:"  # the pseudo destination that records the rua look-up
MAIL_OFF = "mail reports are off (tlsrpt.mail_reports: false)"
LEASE_S = 900.0  # a claimed destination is this reporter's for at most this long
DOMAIN_CONCURRENCY = 4  # report domains worked on at once
SEND_CONCURRENCY = 4  # destinations of one domain sent to at once
DOMAIN_DEADLINE_S = 600.0  # every send for one domain ends within this (< LEASE_S)
MAX_DETAIL_CHARS = 300  # of an unexpected exception's text kept in the deliveries table

log = logging.getLogger("tlspolicy.tlsrpt")

MailSender = Callable[..., Awaitable[None]]
HttpsPoster = Callable[..., Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one ``run_once`` did for one destination (for the CLI and the tests)."""

    day: date
    domain: str
    uri: str
    outcome: str  # sent | failed | gave-up | skipped | dry-run
    detail: str = ""


class Reporter:
    def __init__(
        self,
        config: TlsrptConfig,
        store: ReportStore,
        dns: DnsClient,
        *,
        metrics: TlsrptMetricsSink = NULL_TLSRPT_METRICS,
        clock: Callable[[], datetime] | None = None,
        send_mail: MailSender = deliver.send_mail,
        post_https: HttpsPoster = deliver.post_https,
    ) -> None:
        if config.submitter is None:
            raise ValueError("tlsrpt.submitter is required to send reports")
        self.config = config
        self.submitter = config.submitter
        self.store = store
        self.dns = dns
        self.metrics = metrics
        self.clock = clock or (lambda: datetime.now(UTC))
        self._send_mail = send_mail
        self._post_https = post_https
        self._dkim = _load_dkim(config)
        self._instance: str | None = None

    async def run(self) -> None:
        """Check every ``check_interval`` seconds, forever (cancel to stop)."""
        while True:
            try:
                await self.run_once()
                await self.store.purge_before(
                    utc_day(self.clock()) - timedelta(days=self.config.keep_days)
                )
            except ReportStoreError as exc:
                log.error("TLSRPT reporter: store failed, trying again later: %s", exc)
            except Exception:
                log.exception("TLSRPT reporter: this pass failed, trying again later")
            await asyncio.sleep(self.config.check_interval)

    async def aclose(self) -> None:
        return None

    async def build(self, day: date, domain: str) -> dict[str, Any] | None:
        """The report of ``domain`` for ``day`` as it was frozen, or as it would be now;
        None: no data."""
        frozen = await self.store.frozen(day, domain)
        if frozen is not None:
            loaded: dict[str, Any] = json.loads(gzip.decompress(frozen.body))
            return loaded
        groups = await self.store.day_counts(day, domain)
        if not groups:
            return None
        rid = await self._new_report_id(day, domain)
        return await asyncio.to_thread(self._report_dict, day, domain, groups, rid)

    async def run_once(
        self,
        *,
        day: date | None = None,
        domain: str | None = None,
        force: bool = False,
        dry_run: bool = False,
    ) -> list[Attempt]:
        """Send what is due now (``force``: ignore the schedule, not the retry backoff)."""
        now = self.clock()
        today = utc_day(now)
        if day is not None:
            days = [day] if day < today else []
        else:
            since = today - timedelta(days=self.config.keep_days)
            days = [d for d in await self.store.days(since) if d < today]
        work = [
            (d, dom)
            for d in days
            for dom in sorted({g.domain for g in await self.store.day_counts(d, domain)})
        ]
        slots = asyncio.Semaphore(DOMAIN_CONCURRENCY)

        async def one(d: date, dom: str) -> list[Attempt]:
            async with slots:
                try:
                    return await self._report(d, dom, now, force=force, dry_run=dry_run)
                except ReportStoreError:
                    raise
                except Exception as exc:
                    log.exception("TLSRPT report for %s on %s failed", dom, d)
                    return [Attempt(d, dom, "", "failed", _describe(exc))]

        results = await asyncio.gather(*(one(d, dom) for d, dom in work))
        return [attempt for attempts in results for attempt in attempts]

    async def _report(
        self, day: date, domain: str, now: datetime, *, force: bool, dry_run: bool
    ) -> list[Attempt]:
        cfg = self.config
        if cfg.suppressed(domain):
            return [Attempt(day, domain, "", "skipped", "suppressed")]
        groups = await self.store.day_counts(day, domain)
        if not groups:
            return []
        if cfg.only_with_failures and totals(groups)[1] == 0:
            return [Attempt(day, domain, "", "skipped", "no failures")]
        due = due_at(day, domain, delay=cfg.delay, spread=cfg.spread)
        if now < due and not force:
            return [Attempt(day, domain, "", "skipped", f"due at {due:%Y-%m-%dT%H:%M:%SZ}")]
        stamp = now.timestamp()
        existing = {d.uri: d for d in await self.store.deliveries(day, domain)}
        dns_row = existing.pop(DNS_URI, None)
        if dns_row is not None and dns_row.state != "waiting" and dns_row.given_up:
            return [Attempt(day, domain, DNS_URI, "skipped", dns_row.last_error or "")]
        if existing and not any(
            r.state == "waiting" and (r.next_attempt or 0) <= stamp for r in existing.values()
        ):
            return []  # everything delivered, given up, or waiting for its backoff
        if (
            dns_row is not None
            and dns_row.state == "waiting"
            and (dns_row.next_attempt or 0) > stamp
        ):
            return []
        frozen = None if dry_run else await self._frozen(day, domain, groups)
        rid = frozen.report_id if frozen else await self._new_report_id(day, domain)
        destinations, problem, temporary = await self._lookup(domain)
        if problem is not None:
            failed = await self._dns_failed(
                rid, day, domain, stamp=stamp, problem=problem, temporary=temporary,
                dry_run=dry_run,
            )  # fmt: skip
            return [failed]
        if (
            dns_row is not None
            and dns_row.state == "waiting"
            and not dry_run
            and await self.store.claim(rid, DNS_URI, day, domain, now=stamp, lease_s=LEASE_S)
        ):
            await self.store.finish(rid, DNS_URI, now=stamp, error=None, next_attempt=None)
        if dry_run or frozen is None:
            return [Attempt(day, domain, dest.uri, "dry-run") for dest in destinations]
        deadline = asyncio.get_running_loop().time() + DOMAIN_DEADLINE_S
        sends = asyncio.Semaphore(SEND_CONCURRENCY)

        async def deliver_one(dest: Destination) -> Attempt | None:
            async with sends:
                return await self._deliver(dest, frozen, now, deadline=deadline)

        results = await asyncio.gather(*(deliver_one(dest) for dest in destinations))
        return [r for r in results if r is not None]

    async def _deliver(
        self, dest: Destination, frozen: FrozenReport, now: datetime, *, deadline: float
    ) -> Attempt | None:
        """One attempt to one destination; None when it is not ours to try now."""
        cfg = self.config
        day, domain, rid = frozen.day, frozen.domain, frozen.report_id
        stamp = now.timestamp()
        claimed = await self.store.claim(rid, dest.uri, day, domain, now=stamp, lease_s=LEASE_S)
        if claimed is None:
            return None
        refused = self._refused(dest)
        if refused is not None:
            await self.store.finish(
                rid, dest.uri, now=stamp, error=refused, next_attempt=None, given_up=True
            )
            log.warning("TLSRPT report %s to %s: %s (gave up)", rid, dest.uri, refused)
            return Attempt(day, domain, dest.uri, "gave-up", refused)
        try:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise DeliveryError("timeout", f"the {DOMAIN_DEADLINE_S:g} s for {domain} ran out")
            async with asyncio.timeout(remaining):
                await self._send(dest, frozen, now)
        except Exception as exc:  # one destination's failure, whatever it is
            error = _as_delivery_error(exc, dest)
            when = (
                None
                if error.kind in deliver.PERMANENT_KINDS
                else next_attempt(
                    claimed.attempts + 1,
                    now=stamp,
                    first_attempt=claimed.first_attempt or stamp,
                    retry_min=cfg.retry_min,
                    retry_max=cfg.retry_max,
                    retry_for=cfg.retry_for,
                )
            )
            await self.store.finish(
                rid, dest.uri, now=stamp, error=str(error), next_attempt=when,
                given_up=when is None,
            )  # fmt: skip
            self.metrics.tlsrpt_report(dest.method, "failed")
            outcome = "gave-up" if when is None else "failed"
            log.warning("TLSRPT report %s to %s: %s (%s)", rid, dest.uri, error, outcome)
            return Attempt(day, domain, dest.uri, outcome, str(error))
        await self.store.finish(rid, dest.uri, now=stamp, error=None, next_attempt=None)
        self.metrics.tlsrpt_report(dest.method, "sent")
        log.info("TLSRPT report %s sent to %s", rid, dest.uri)
        return Attempt(day, domain, dest.uri, "sent")

    def _refused(self, dest: Destination) -> str | None:
        """Why the operator's configuration rules a destination out, or None."""
        cfg = self.config
        if dest.method == "mailto" and not cfg.mail_reports:
            return MAIL_OFF
        if dest.method == "https" and dest.port not in cfg.https_ports:
            allowed = ", ".join(str(p) for p in cfg.https_ports)
            return f"port {dest.port} is not in tlsrpt.https_ports ({allowed})"
        return None

    async def _frozen(self, day: date, domain: str, groups: list[GroupCounts]) -> FrozenReport:
        """The report as first built (building and storing it now if it is not yet)."""
        ok, failed = totals(groups)
        frozen = await self.store.frozen(day, domain)
        if frozen is None:
            rid = await self._new_report_id(day, domain)
            body = await asyncio.to_thread(self._report_body, day, domain, groups, rid)
            frozen = await self.store.freeze(FrozenReport(day, domain, rid, body, ok, failed))
        late = ok + failed - frozen.successful - frozen.failed
        if late > frozen.late:
            self.metrics.tlsrpt_late(late - frozen.late)
            log.warning(
                "TLSRPT: %d sessions for %s on %s were stored after its report %s was built;"
                " they are not in it", late - frozen.late, domain, day, frozen.report_id,
            )  # fmt: skip
            await self.store.note_late(day, domain, late)
        return frozen

    async def _new_report_id(self, day: date, domain: str) -> str:
        """The id a report built now gets: one a delivery already used for that day and
        domain (a store from before frozen reports), else ``report_id`` with the store's
        instance."""
        used = sorted({d.report_id for d in await self.store.deliveries(day, domain)})
        if used:
            return used[0]
        if self._instance is None:
            self._instance = await self.store.instance()
        return report_id(day, domain, self.submitter, self._instance)

    def _report_dict(
        self, day: date, domain: str, groups: list[GroupCounts], rid: str
    ) -> dict[str, Any]:
        cfg = self.config
        return build_report(
            day, domain, groups, organization_name=cfg.organization, contact_info=cfg.contact,
            rid=rid,
        )  # fmt: skip

    def _report_body(self, day: date, domain: str, groups: list[GroupCounts], rid: str) -> bytes:
        """The gzip body (runs in a worker thread: a large report is CPU work)."""
        return compress(format_report(self._report_dict(day, domain, groups, rid)))

    async def _lookup(self, domain: str) -> tuple[list[Destination], str | None, bool]:
        """(destinations, problem, temporary): problem is None when there is a usable rua."""
        name = f"_smtp._tls.{domain}"
        try:
            answer = await self.dns.query(name, "TXT")
        except DnsError as exc:
            return [], f"DNS lookup of {name} failed: {exc}", True
        try:
            record = select_record([r for r in answer.records if isinstance(r, TxtRecord)])
        except RecordSyntaxError as exc:
            return [], f"invalid TLSRPT record at {name}: {exc}", False
        if record is None:
            return [], f"no TLSRPT record at {name} any more", False
        if record.dropped:
            log.warning(
                "TLSRPT record at %s: %d destinations over the limits (%d per record, %d per"
                " host) are not used", name, len(record.dropped), MAX_DESTINATIONS, MAX_PER_HOST,
            )  # fmt: skip
        if not record.destinations:
            unsupported = ", ".join(record.unsupported[:MAX_DESTINATIONS])
            return [], f"no usable rua at {name} (unsupported: {unsupported})", False
        return list(record.destinations), None, False

    async def _dns_failed(
        self, rid: str, day: date, domain: str, *, stamp: float, problem: str,
        temporary: bool, dry_run: bool,
    ) -> Attempt:  # fmt: skip
        if dry_run:
            return Attempt(day, domain, DNS_URI, "dry-run", problem)
        claimed = await self.store.claim(rid, DNS_URI, day, domain, now=stamp, lease_s=LEASE_S)
        if claimed is None:
            return Attempt(day, domain, DNS_URI, "skipped", problem)
        cfg = self.config
        when = None
        if temporary:
            when = next_attempt(
                claimed.attempts + 1, now=stamp, first_attempt=claimed.first_attempt or stamp,
                retry_min=cfg.retry_min, retry_max=cfg.retry_max, retry_for=cfg.retry_for,
            )  # fmt: skip
        await self.store.finish(
            rid, DNS_URI, now=stamp, error=problem, next_attempt=when, given_up=when is None
        )
        log.warning("TLSRPT report %s: %s", rid, problem)
        return Attempt(day, domain, DNS_URI, "failed" if when else "gave-up", problem)

    def _message(self, frozen: FrozenReport, recipient: str, now: datetime) -> bytes:
        """The signed mail of ``frozen`` for ``recipient`` (runs in a worker thread: the
        report is decoded again and DKIM signs with RSA, CPU work of milliseconds)."""
        cfg = self.config
        return build_message(
            json.loads(gzip.decompress(frozen.body)), frozen.body, domain=frozen.domain,
            submitter=self.submitter, sender=cfg.from_address, recipient=recipient, now=now,
            dkim_key=self._dkim,
        )  # fmt: skip

    async def _send(self, dest: Destination, frozen: FrozenReport, now: datetime) -> None:
        cfg = self.config
        if dest.method == "https":
            await self._post_https(
                dest.target, frozen.body, dns=self.dns, allow_private=cfg.allow_private_addresses,
                ca_file=cfg.https_ca_file, limit_s=cfg.https_timeout,
            )  # fmt: skip
            return
        message = await asyncio.to_thread(self._message, frozen, dest.target, now)
        await self._send_mail(
            message, sender=cfg.from_address, recipient=dest.target, host=cfg.smtp_host,
            port=cfg.smtp_port, limit_s=cfg.smtp_timeout,
        )  # fmt: skip


def _as_delivery_error(exc: Exception, dest: Destination) -> DeliveryError:
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, TimeoutError):
        return DeliveryError("timeout", "no answer in time")
    log.error("TLSRPT: unexpected error sending to %s", dest.uri, exc_info=exc)
    return DeliveryError("other", _describe(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_DETAIL_CHARS]


def _load_dkim(config: TlsrptConfig) -> DkimKey | None:
    if config.dkim_key is None:
        return None
    domain = config.dkim_domain or config.submitter or ""
    return DkimKey(Path(config.dkim_key).read_bytes(), config.dkim_selector, domain)
