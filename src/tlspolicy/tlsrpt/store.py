"""Where TLSRPT counts and delivery attempts live, and the batching writer in front of it.

Backends (``backend.open_store`` picks one): ``sqlite_backend.SqliteReportStore`` (default,
one file next to the cache) and ``postgres_backend.PostgresReportStore`` (several MTAs
feeding one reporter). Both keep these rules:

* ``add`` writes one ``Batch`` in one transaction, adding to the stored counts with an
  upsert (``successful = successful + excluded.successful``), so several collectors that
  share one PostgreSQL database add up instead of overwriting each other.
* Rows are keyed by a SHA-256 of their full key (``group_hash``/``failure_hash``): TLSRPT
  records and MTA-STS policy strings can be longer than a PostgreSQL btree entry may be.
* A delivery is one row per (report id, destination URI). ``claim`` takes a short lease on
  it in one statement, only while it is not delivered, not given up and due; so two
  reporters never send the same report to one destination at once, and a destination that
  accepted a report never gets it again, also after a restart. ``finish`` records the
  outcome of the attempt and drops the lease.
* A report is frozen when it is first built: ``freeze`` stores its gzip bytes once per
  (day, domain), and every destination and every retry gets exactly those bytes, so one
  report id never names two contents. Sessions stored for a day after its report was
  frozen are late: the reporter counts them (``note_late``), they are not reported.
* ``instance`` is the store's random id, made once when the store is created; it goes
  into every report id (``report.report_id``).
* Reports received from others (``tlsrpt/inbound.py``) are one ``tlsrpt_inbound`` row per
  report that arrived, whatever became of it (``Verdict``), with its raw bytes gzipped
  when it is counted or kept aside (unsigned mail); its policies and failure details are
  rows of their own, keyed by that row's id. A unique index on (organization, report id)
  over the accepted rows makes a report count once, whichever way and on whichever host
  it arrived: a second copy becomes a ``duplicate`` row. ``purge_inbound_before`` drops
  what arrived before a time (``tlsrpt.inbound_keep_days``).

``BatchWriter`` collects datagrams in memory and writes every ``FLUSH_INTERVAL_S`` or every
``FLUSH_DATAGRAMS`` datagrams, whichever comes first. What a ``kill -9`` can lose is that
batch in flight: at most ``FLUSH_INTERVAL_S`` of datagrams (or ``FLUSH_DATAGRAMS`` of them).
SIGTERM flushes it. A failed write keeps the batch and merges it with the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from tlspolicy.errors import ReportStoreError
from tlspolicy.tlsrpt.aggregate import Batch, GroupCounts, GroupKey
from tlspolicy.tlsrpt.datagram import Datagram, FailureDetail
from tlspolicy.tlsrpt.inbound import InboundReport

FLUSH_INTERVAL_S = 0.5  # longest time a datagram waits in memory before it is written
FLUSH_DATAGRAMS = 1000  # a batch this large is written at once
RETRY_WRITE_S = 5.0  # after a failed write, wait this long before the next try

log = logging.getLogger("tlspolicy.tlsrpt")


@dataclass(frozen=True, slots=True)
class Delivery:
    """The state of one report towards one destination (``dns:`` is the rua look-up)."""

    report_id: str
    uri: str
    day: date
    domain: str
    attempts: int = 0
    first_attempt: float | None = None
    last_attempt: float | None = None
    last_error: str | None = None
    next_attempt: float | None = None
    delivered_at: float | None = None
    given_up: bool = False

    @property
    def state(self) -> str:
        if self.delivered_at is not None:
            return "sent"
        if self.given_up:
            return "failed"
        return "waiting"


@dataclass(frozen=True, slots=True)
class FrozenReport:
    """A report as first built: what every destination gets, on every attempt."""

    day: date
    domain: str
    report_id: str
    body: bytes  # application/tlsrpt+gzip
    successful: int  # session counts in it, to tell late sessions
    failed: int
    late: int = 0  # sessions stored for that day after it was frozen (already counted)


INSTANCE_BYTES = 4  # the store's id: 8 hex digits


def new_instance() -> str:
    return secrets.token_hex(INSTANCE_BYTES)


# The columns both backends select, in ``delivery_from_row`` order.
DELIVERY_COLUMNS = (
    "report_id, uri, day, domain, attempts, first_attempt, last_attempt, last_error,"
    " next_attempt, delivered_at, given_up"
)


def delivery_from_row(row: Any) -> Delivery:
    """A ``DELIVERY_COLUMNS`` row (sqlite tuple or asyncpg record; ``day`` as text or date)."""
    day = row[2] if isinstance(row[2], date) else date.fromisoformat(row[2])
    return Delivery(
        report_id=row[0],
        uri=row[1],
        day=day,
        domain=row[3],
        attempts=row[4],
        first_attempt=row[5],
        last_attempt=row[6],
        last_error=row[7],
        next_attempt=row[8],
        delivered_at=row[9],
        given_up=bool(row[10]),
    )


@dataclass(frozen=True, slots=True)
class InboundItem:
    """One received report, as the store keeps it (``report`` None unless it is valid)."""

    transport: str
    verdict: str
    received_at: float
    reason: str = ""
    report: InboundReport | None = None
    raw: bytes | None = None  # gzip; what was received (the report, or the refused mail)
    signer: str | None = None  # the DKIM d= that verified, for mail


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """A ``tlsrpt_inbound`` row for the metrics: what arrived, how, what became of it."""

    id: int
    transport: str
    verdict: str


@dataclass(frozen=True, slots=True)
class ReceivedPolicy:
    """One policy of one accepted report: the counts an explanation adds up."""

    day: date
    domain: str
    organization: str
    policy_type: str
    successful: int
    failed: int


@dataclass(frozen=True, slots=True)
class ReceivedFailure:
    """One failure detail of one accepted report."""

    day: date
    domain: str
    organization: str
    result_type: str
    mx_host: str | None
    receiving_ip: str | None
    count: int


INBOUND_POLICY_COLUMNS = "day, domain, organization, policy_type, successful, failed"
INBOUND_FAILURE_COLUMNS = "day, domain, organization, result_type, mx_host, receiving_ip, count"


def _day_of(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def received_policy_from_row(row: Any) -> ReceivedPolicy:
    return ReceivedPolicy(_day_of(row[0]), row[1], row[2], row[3], int(row[4]), int(row[5]))


def received_failure_from_row(row: Any) -> ReceivedFailure:
    return ReceivedFailure(_day_of(row[0]), row[1], row[2], row[3], row[4], row[5], int(row[6]))


def inbound_rows(
    rid: int, report: InboundReport
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The policy and failure rows of an accepted report (day as a ``date``)."""
    day, org = report.day, report.organization
    policies = []
    failures = []
    for p_index, p in enumerate(report.policies):
        policies.append(
            (rid, p_index, day, p.policy_domain, org, p.policy_type, p.successful, p.failed)
        )
        for f_index, f in enumerate(p.failures):
            failures.append((
                rid, p_index, f_index, day, p.policy_domain, org, f.result_type,
                f.receiving_mx_hostname, f.receiving_ip, f.sending_mta_ip,
                f.failure_reason_code, f.count,
            ))  # fmt: skip
    return policies, failures


class ReportStore(Protocol):
    """What the collector, the reporter and the CLI need from a backend."""

    async def open(self) -> None: ...
    async def aclose(self) -> None: ...
    async def add(self, batch: Batch) -> None: ...
    async def day_counts(self, day: date, domain: str | None = None) -> list[GroupCounts]: ...
    async def days(self, since: date) -> list[date]: ...
    async def deliveries(self, day: date, domain: str | None = None) -> list[Delivery]: ...
    async def claim(
        self, report_id: str, uri: str, day: date, domain: str, *, now: float, lease_s: float
    ) -> Delivery | None: ...
    async def finish(
        self,
        report_id: str,
        uri: str,
        *,
        now: float,
        error: str | None,
        next_attempt: float | None,
        given_up: bool = False,
    ) -> None: ...
    async def purge_before(self, day: date) -> int: ...
    async def instance(self) -> str: ...
    async def frozen(self, day: date, domain: str) -> FrozenReport | None: ...
    async def freeze(self, report: FrozenReport) -> FrozenReport: ...
    async def note_late(self, day: date, domain: str, late: int) -> None: ...
    async def add_inbound(self, item: InboundItem) -> str: ...
    async def inbound_events(self, after: int, limit: int) -> list[InboundEvent]: ...
    async def last_inbound_id(self) -> int: ...
    async def received_policies(
        self, since: date, domain: str | None = None
    ) -> list[ReceivedPolicy]: ...
    async def received_failures(
        self, since: date, domain: str | None = None
    ) -> list[ReceivedFailure]: ...
    async def received_rows(
        self, after: int, upto: int
    ) -> tuple[list[ReceivedPolicy], list[ReceivedFailure]]: ...
    async def purge_inbound_before(self, moment: float) -> int: ...


def group_hash(key: GroupKey) -> str:
    raw = "\0".join((key.day.isoformat(), key.domain, key.record, key.policy.text))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def failure_hash(key: FailureDetail) -> str:
    return hashlib.sha256(key.text.encode("utf-8")).hexdigest()


class BatchWriter:
    """Buffers datagrams and writes them to ``store`` in batches (see the module doc)."""

    def __init__(
        self,
        store: ReportStore,
        *,
        interval: float = FLUSH_INTERVAL_S,
        max_datagrams: int = FLUSH_DATAGRAMS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.interval = interval
        self.max_datagrams = max_datagrams
        self.clock = clock or (lambda: datetime.now(UTC))
        self.written = 0  # datagrams written to the store
        self.write_failures = 0
        self._pending = Batch()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._failing = False

    def add(self, datagram: Datagram) -> None:
        """Count one datagram now; it reaches the store with the next flush."""
        self._pending.add(datagram, self.clock())
        if self._pending.datagrams >= self.max_datagrams:
            self._wake.set()

    @property
    def pending(self) -> int:
        return self._pending.datagrams

    async def run(self) -> None:
        """Flush forever (cancel to stop; call ``flush`` afterwards for the rest)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            if not await self.flush():
                await asyncio.sleep(RETRY_WRITE_S)

    async def flush(self) -> bool:
        """Write what is pending; False when the store failed (the data is kept)."""
        async with self._lock:
            if not self._pending:
                return True
            batch, self._pending = self._pending, Batch()
            try:
                await self.store.add(batch)
            except ReportStoreError as exc:
                batch.merge(self._pending)
                self._pending = batch
                self.write_failures += 1
                if not self._failing:
                    log.error("TLSRPT store write failed, keeping the counts: %s", exc)
                self._failing = True
                return False
            if self._failing:
                log.info("TLSRPT store writes work again")
            self._failing = False
            self.written += batch.datagrams
            return True
