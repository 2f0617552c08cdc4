"""The daily reporter: build each finished day's reports and deliver them to every rua.

Per (day, report domain), once ``schedule.due_at`` has passed:

1. Skip suppressed domains, and days without failures when ``only_with_failures`` is set.
2. Look up ``_smtp._tls.<domain>`` TXT again through the validating DNS client (the record
   Postfix saw may be a day old) and parse it strictly (``record.select_record``). No record,
   or a broken one: nothing is sent, and the ``dns:`` row says why (given up). A DNS
   failure: the ``dns:`` row is retried with backoff like a destination.
3. For each destination: ``store.claim`` (skips what was delivered, given up, not yet due,
   or leased by another reporter), send, ``store.finish`` with the outcome and the next
   attempt. Every attempt is stored; a success is never repeated.

A crash between a successful send and ``finish`` is the one case that can send twice: the
lease (``LEASE_S``) expires and the destination is tried again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tlspolicy.dnsclient import DnsClient
from tlspolicy.dnsdata import TxtRecord
from tlspolicy.errors import DeliveryError, DnsError, RecordSyntaxError, ReportStoreError
from tlspolicy.tlsrpt import deliver
from tlspolicy.tlsrpt.aggregate import utc_day
from tlspolicy.tlsrpt.mail import DkimKey, build_message, compress
from tlspolicy.tlsrpt.record import Destination, select_record
from tlspolicy.tlsrpt.report import build_report, format_report, report_id, totals
from tlspolicy.tlsrpt.schedule import due_at, next_attempt
from tlspolicy.tlsrpt.settings import TlsrptConfig
from tlspolicy.tlsrpt.sink import NULL_TLSRPT_METRICS, TlsrptMetricsSink
from tlspolicy.tlsrpt.store import ReportStore

DNS_URI = "dns:"  # the pseudo destination that records the rua look-up
LEASE_S = 300.0  # a claimed destination is this reporter's for at most this long

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
            await asyncio.sleep(self.config.check_interval)

    async def aclose(self) -> None:
        return None

    async def build(self, day: date, domain: str) -> dict[str, Any] | None:
        """The report of ``domain`` for ``day`` as it is (or will be) sent; None: no data."""
        groups = await self.store.day_counts(day, domain)
        if not groups:
            return None
        cfg = self.config
        return build_report(
            day,
            domain,
            groups,
            organization_name=cfg.organization,
            contact_info=cfg.contact,
            submitter=self.submitter,
        )

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
        attempts: list[Attempt] = []
        for d in days:
            domains = sorted({g.domain for g in await self.store.day_counts(d, domain)})
            for dom in domains:
                attempts.extend(await self._report(d, dom, now, force=force, dry_run=dry_run))
        return attempts

    async def _report(
        self, day: date, domain: str, now: datetime, *, force: bool, dry_run: bool
    ) -> list[Attempt]:
        cfg = self.config
        if cfg.suppressed(domain):
            return [Attempt(day, domain, "", "skipped", "suppressed")]
        report = await self.build(day, domain)
        if report is None:
            return []
        if cfg.only_with_failures and totals(await self.store.day_counts(day, domain))[1] == 0:
            return [Attempt(day, domain, "", "skipped", "no failures")]
        due = due_at(day, domain, delay=cfg.delay, spread=cfg.spread)
        if now < due and not force:
            return [Attempt(day, domain, "", "skipped", f"due at {due:%Y-%m-%dT%H:%M:%SZ}")]
        rid = report_id(day, domain, self.submitter)
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
        body = format_report(report)
        gzipped = compress(body)
        results = []
        for dest in destinations:
            if dry_run:
                results.append(Attempt(day, domain, dest.uri, "dry-run"))
                continue
            claimed = await self.store.claim(rid, dest.uri, day, domain, now=stamp, lease_s=LEASE_S)
            if claimed is None:
                continue
            first = claimed.first_attempt or stamp
            try:
                await self._send(dest, report, gzipped, domain, now)
            except DeliveryError as exc:
                when = next_attempt(
                    claimed.attempts + 1,
                    now=stamp,
                    first_attempt=first,
                    retry_min=cfg.retry_min,
                    retry_max=cfg.retry_max,
                    retry_for=cfg.retry_for,
                )
                await self.store.finish(
                    rid, dest.uri, now=stamp, error=str(exc), next_attempt=when,
                    given_up=when is None,
                )  # fmt: skip
                self.metrics.tlsrpt_report(dest.method, "failed")
                outcome = "gave-up" if when is None else "failed"
                log.warning("TLSRPT report %s to %s: %s (%s)", rid, dest.uri, exc, outcome)
                results.append(Attempt(day, domain, dest.uri, outcome, str(exc)))
                continue
            await self.store.finish(rid, dest.uri, now=stamp, error=None, next_attempt=None)
            self.metrics.tlsrpt_report(dest.method, "sent")
            log.info("TLSRPT report %s sent to %s", rid, dest.uri)
            results.append(Attempt(day, domain, dest.uri, "sent"))
        return results

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
        if not record.destinations:
            unsupported = ", ".join(record.unsupported)
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

    async def _send(
        self, dest: Destination, report: dict[str, Any], gzipped: bytes, domain: str,
        now: datetime,
    ) -> None:  # fmt: skip
        cfg = self.config
        if dest.method == "https":
            await self._post_https(
                dest.target, gzipped, ca_file=cfg.https_ca_file, limit_s=cfg.https_timeout
            )
            return
        message = build_message(
            report, gzipped, domain=domain, submitter=self.submitter, sender=cfg.from_address,
            recipient=dest.target, now=now, dkim_key=self._dkim,
        )  # fmt: skip
        await self._send_mail(
            message, sender=cfg.from_address, recipient=dest.target, host=cfg.smtp_host,
            port=cfg.smtp_port, limit_s=cfg.smtp_timeout,
        )  # fmt: skip


def _load_dkim(config: TlsrptConfig) -> DkimKey | None:
    if config.dkim_key is None:
        return None
    domain = config.dkim_domain or config.submitter or ""
    return DkimKey(Path(config.dkim_key).read_bytes(), config.dkim_selector, domain)
