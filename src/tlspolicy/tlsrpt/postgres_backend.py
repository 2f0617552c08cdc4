"""The shared TLSRPT store: PostgreSQL through asyncpg, for several MTAs and one reporter.

Rules kept here (besides those of ``store.py``):

* The schema is created under a transaction-scoped advisory lock, so collectors starting
  together do not race on ``CREATE TABLE``.
* ``add`` is one transaction of upserts that add (``successful = t.successful + ...``);
  PostgreSQL row locks make concurrent adds from several collectors sum exactly.
* ``claim`` is a single ``UPDATE ... WHERE <due and not leased> RETURNING``: of two
  reporters, one gets the row.
* Every asyncpg/OS error and timeout becomes ``ReportStoreError`` in ``_mapped``.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import date
from typing import Any

import asyncpg

from tlspolicy.db.pgerrors import mapped_errors
from tlspolicy.errors import ReportStoreError
from tlspolicy.tlsrpt.aggregate import Batch, GroupCounts, PolicyKey
from tlspolicy.tlsrpt.datagram import FailureDetail
from tlspolicy.tlsrpt.inbound import Verdict
from tlspolicy.tlsrpt.store import (
    DELIVERY_COLUMNS,
    INBOUND_FAILURE_COLUMNS,
    INBOUND_POLICY_COLUMNS,
    Delivery,
    FrozenReport,
    InboundEvent,
    InboundItem,
    ReceivedFailure,
    ReceivedPolicy,
    delivery_from_row,
    failure_hash,
    group_hash,
    inbound_rows,
    new_instance,
    received_failure_from_row,
    received_policy_from_row,
)

PG_CONNECT_TIMEOUT_S = 5.0
PG_OP_TIMEOUT_S = 10.0
PG_POOL_MAX = 4
SCHEMA_LOCK_ID = 0x746C7372  # "tlsr": advisory lock key for schema creation

SCHEMA = """
CREATE TABLE IF NOT EXISTS tlsrpt_sessions (
    gkey TEXT PRIMARY KEY, day DATE NOT NULL, domain TEXT NOT NULL, record TEXT NOT NULL,
    policy TEXT NOT NULL, successful BIGINT NOT NULL, failed BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS tlsrpt_sessions_day ON tlsrpt_sessions (day, domain);
CREATE TABLE IF NOT EXISTS tlsrpt_failures (
    gkey TEXT NOT NULL, fkey TEXT NOT NULL, detail TEXT NOT NULL, count BIGINT NOT NULL,
    PRIMARY KEY (gkey, fkey));
CREATE TABLE IF NOT EXISTS tlsrpt_deliveries (
    report_id TEXT NOT NULL, uri TEXT NOT NULL, day DATE NOT NULL, domain TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, first_attempt DOUBLE PRECISION,
    last_attempt DOUBLE PRECISION, last_error TEXT, next_attempt DOUBLE PRECISION,
    delivered_at DOUBLE PRECISION, given_up BOOLEAN NOT NULL DEFAULT FALSE,
    lease_until DOUBLE PRECISION, PRIMARY KEY (report_id, uri));
CREATE INDEX IF NOT EXISTS tlsrpt_deliveries_day ON tlsrpt_deliveries (day, domain);
CREATE TABLE IF NOT EXISTS tlsrpt_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tlsrpt_reports (
    day DATE NOT NULL, domain TEXT NOT NULL, report_id TEXT NOT NULL, body BYTEA NOT NULL,
    successful BIGINT NOT NULL, failed BIGINT NOT NULL, late BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, domain));
CREATE TABLE IF NOT EXISTS tlsrpt_inbound (
    id BIGSERIAL PRIMARY KEY, received_at DOUBLE PRECISION NOT NULL, transport TEXT NOT NULL,
    verdict TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', organization TEXT,
    report_id TEXT, signer TEXT, day DATE, raw BYTEA);
CREATE UNIQUE INDEX IF NOT EXISTS tlsrpt_inbound_key ON tlsrpt_inbound (organization, report_id)
    WHERE verdict = 'accepted';
CREATE INDEX IF NOT EXISTS tlsrpt_inbound_received ON tlsrpt_inbound (received_at);
CREATE TABLE IF NOT EXISTS tlsrpt_inbound_policies (
    rid BIGINT NOT NULL, pidx INTEGER NOT NULL, day DATE NOT NULL, domain TEXT NOT NULL,
    organization TEXT NOT NULL, policy_type TEXT NOT NULL, successful BIGINT NOT NULL,
    failed BIGINT NOT NULL, PRIMARY KEY (rid, pidx));
CREATE INDEX IF NOT EXISTS tlsrpt_inbound_policies_day
    ON tlsrpt_inbound_policies (day, domain);
CREATE TABLE IF NOT EXISTS tlsrpt_inbound_failures (
    rid BIGINT NOT NULL, pidx INTEGER NOT NULL, fidx INTEGER NOT NULL, day DATE NOT NULL,
    domain TEXT NOT NULL, organization TEXT NOT NULL, result_type TEXT NOT NULL,
    mx_host TEXT, receiving_ip TEXT, sending_ip TEXT, reason_code TEXT,
    count BIGINT NOT NULL, PRIMARY KEY (rid, pidx, fidx));
CREATE INDEX IF NOT EXISTS tlsrpt_inbound_failures_day
    ON tlsrpt_inbound_failures (day, domain);
"""
REPORT_COLUMNS = "day, domain, report_id, body, successful, failed, late"
# Every table of the store (what a test drops to start from nothing).
TABLES = (
    "tlsrpt_sessions, tlsrpt_failures, tlsrpt_deliveries, tlsrpt_reports, tlsrpt_meta,"
    " tlsrpt_inbound, tlsrpt_inbound_policies, tlsrpt_inbound_failures"
)


class PostgresReportStore:
    """``ReportStore`` on PostgreSQL; ``url`` is a ``postgresql://`` URL."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._pool: Any = None  # asyncpg.Pool (untyped)

    async def open(self) -> None:
        async with self._mapped(PG_CONNECT_TIMEOUT_S + PG_OP_TIMEOUT_S):
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._url,
                    min_size=1,
                    max_size=PG_POOL_MAX,
                    timeout=PG_CONNECT_TIMEOUT_S,
                    command_timeout=PG_OP_TIMEOUT_S,
                )
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK_ID)
                await conn.execute(SCHEMA)
                await conn.execute(
                    "INSERT INTO tlsrpt_meta VALUES ('instance', $1) ON CONFLICT DO NOTHING",
                    new_instance(),
                )

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(PG_OP_TIMEOUT_S):
                await pool.close()
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pool.terminate()

    async def add(self, batch: Batch) -> None:
        sessions = [
            (group_hash(k), k.day, k.domain, k.record, k.policy.text, c.successful, c.failed)
            for k, c in batch.sessions.items()
        ]
        failures = [
            (group_hash(k), failure_hash(f), f.text, n) for (k, f), n in batch.failures.items()
        ]
        # Sorted keys: concurrent collectors lock rows in the same order (no deadlocks).
        sessions.sort()
        failures.sort()
        async with self._mapped(PG_OP_TIMEOUT_S), self._db().acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO tlsrpt_sessions AS t VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (gkey) DO UPDATE SET"
                " successful = t.successful + excluded.successful,"
                " failed = t.failed + excluded.failed",
                sessions,
            )
            await conn.executemany(
                "INSERT INTO tlsrpt_failures AS t VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (gkey, fkey) DO UPDATE SET count = t.count + excluded.count",
                failures,
            )

    async def day_counts(self, day: date, domain: str | None = None) -> list[GroupCounts]:
        sql = (
            "SELECT s.gkey, s.domain, s.record, s.policy, s.successful, s.failed,"
            " f.detail, f.count FROM tlsrpt_sessions s"
            " LEFT JOIN tlsrpt_failures f ON f.gkey = s.gkey WHERE s.day = $1"
        )
        args: list[Any] = [day]
        if domain is not None:
            sql += " AND s.domain = $2"
            args.append(domain)
        async with self._mapped(PG_OP_TIMEOUT_S):
            rows = await self._db().fetch(sql + " ORDER BY s.domain, s.gkey", *args)
        groups: dict[str, GroupCounts] = {}
        for row in rows:
            group = groups.get(row["gkey"])
            if group is None:
                group = groups[row["gkey"]] = GroupCounts(
                    day,
                    row["domain"],
                    row["record"],
                    PolicyKey.from_text(row["policy"]),
                    int(row["successful"]),
                    int(row["failed"]),
                    {},
                )
            if row["detail"] is not None:
                group.failures[FailureDetail.from_text(row["detail"])] = int(row["count"])
        return list(groups.values())

    async def days(self, since: date) -> list[date]:
        async with self._mapped(PG_OP_TIMEOUT_S):
            rows = await self._db().fetch(
                "SELECT DISTINCT day FROM tlsrpt_sessions WHERE day >= $1 ORDER BY day", since
            )
        return [row["day"] for row in rows]

    async def deliveries(self, day: date, domain: str | None = None) -> list[Delivery]:
        sql = f"SELECT {DELIVERY_COLUMNS} FROM tlsrpt_deliveries WHERE day = $1"
        args: list[Any] = [day]
        if domain is not None:
            sql += " AND domain = $2"
            args.append(domain)
        async with self._mapped(PG_OP_TIMEOUT_S):
            rows = await self._db().fetch(sql + " ORDER BY domain, uri", *args)
        return [delivery_from_row(row) for row in rows]

    async def claim(
        self, report_id: str, uri: str, day: date, domain: str, *, now: float, lease_s: float
    ) -> Delivery | None:
        async with self._mapped(PG_OP_TIMEOUT_S):
            db = self._db()
            await db.execute(
                "INSERT INTO tlsrpt_deliveries (report_id, uri, day, domain)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (report_id, uri) DO NOTHING",
                report_id, uri, day, domain,
            )  # fmt: skip
            row = await db.fetchrow(
                "UPDATE tlsrpt_deliveries SET lease_until = $3 WHERE report_id = $1"
                " AND uri = $2 AND delivered_at IS NULL AND NOT given_up"
                " AND (next_attempt IS NULL OR next_attempt <= $4)"
                f" AND (lease_until IS NULL OR lease_until <= $4) RETURNING {DELIVERY_COLUMNS}",
                report_id, uri, now + lease_s, now,
            )  # fmt: skip
        return None if row is None else delivery_from_row(row)

    async def finish(
        self,
        report_id: str,
        uri: str,
        *,
        now: float,
        error: str | None,
        next_attempt: float | None,
        given_up: bool = False,
    ) -> None:
        async with self._mapped(PG_OP_TIMEOUT_S):
            await self._db().execute(
                "UPDATE tlsrpt_deliveries SET attempts = attempts + 1,"
                " first_attempt = COALESCE(first_attempt, $3), last_attempt = $3,"
                " last_error = $4::text, next_attempt = $5,"
                " delivered_at = CASE WHEN $4::text IS NULL THEN $3 END,"
                " given_up = $6, lease_until = NULL WHERE report_id = $1 AND uri = $2",
                report_id, uri, now, error, next_attempt, given_up,
            )  # fmt: skip

    async def purge_before(self, day: date) -> int:
        async with self._mapped(PG_OP_TIMEOUT_S), self._db().acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM tlsrpt_failures WHERE gkey IN"
                " (SELECT gkey FROM tlsrpt_sessions WHERE day < $1)",
                day,
            )
            status = await conn.execute("DELETE FROM tlsrpt_sessions WHERE day < $1", day)
            await conn.execute("DELETE FROM tlsrpt_deliveries WHERE day < $1", day)
            await conn.execute("DELETE FROM tlsrpt_reports WHERE day < $1", day)
        return int(status.split()[-1])

    async def instance(self) -> str:
        async with self._mapped(PG_OP_TIMEOUT_S):
            value = await self._db().fetchval(
                "SELECT value FROM tlsrpt_meta WHERE key = 'instance'"
            )
        return str(value)

    async def frozen(self, day: date, domain: str) -> FrozenReport | None:
        async with self._mapped(PG_OP_TIMEOUT_S):
            row = await self._db().fetchrow(
                f"SELECT {REPORT_COLUMNS} FROM tlsrpt_reports WHERE day = $1 AND domain = $2",
                day, domain,
            )  # fmt: skip
        return None if row is None else _frozen_from_row(row)

    async def freeze(self, report: FrozenReport) -> FrozenReport:
        async with self._mapped(PG_OP_TIMEOUT_S), self._db().acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO tlsrpt_reports VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (day, domain) DO NOTHING",
                report.day, report.domain, report.report_id, report.body, report.successful,
                report.failed, report.late,
            )  # fmt: skip
            row = await conn.fetchrow(
                f"SELECT {REPORT_COLUMNS} FROM tlsrpt_reports WHERE day = $1 AND domain = $2",
                report.day, report.domain,
            )  # fmt: skip
        return _frozen_from_row(row)

    async def note_late(self, day: date, domain: str, late: int) -> None:
        async with self._mapped(PG_OP_TIMEOUT_S):
            await self._db().execute(
                "UPDATE tlsrpt_reports SET late = $3 WHERE day = $1 AND domain = $2",
                day, domain, late,
            )  # fmt: skip

    async def add_inbound(self, item: InboundItem) -> str:
        report = item.report
        values = (
            item.received_at, item.transport, item.verdict, item.reason,
            report.organization if report else None, report.report_id if report else None,
            item.signer, report.day if report else None, item.raw,
        )  # fmt: skip
        insert = (
            "INSERT INTO tlsrpt_inbound (received_at, transport, verdict, reason, organization,"
            " report_id, signer, day, raw) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )
        async with self._mapped(PG_OP_TIMEOUT_S), self._db().acquire() as conn, conn.transaction():
            if report is None or item.verdict != Verdict.ACCEPTED:
                await conn.execute(insert, *values)
                return item.verdict
            rid = await conn.fetchval(
                insert + " ON CONFLICT (organization, report_id) WHERE verdict = 'accepted'"
                " DO NOTHING RETURNING id",
                *values,
            )
            if rid is None:
                dup = (*values[:2], str(Verdict.DUPLICATE), "already stored", *values[4:8], None)
                await conn.execute(insert, *dup)
                return Verdict.DUPLICATE
            policies, failures = inbound_rows(int(rid), report)
            await conn.executemany(
                "INSERT INTO tlsrpt_inbound_policies VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                policies,
            )
            await conn.executemany(
                "INSERT INTO tlsrpt_inbound_failures"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                failures,
            )
        return Verdict.ACCEPTED

    async def inbound_events(self, after: int, limit: int) -> list[InboundEvent]:
        async with self._mapped(PG_OP_TIMEOUT_S):
            rows = await self._db().fetch(
                "SELECT id, transport, verdict FROM tlsrpt_inbound WHERE id > $1"
                " ORDER BY id LIMIT $2",
                after, limit,
            )  # fmt: skip
        return [InboundEvent(int(r[0]), r[1], r[2]) for r in rows]

    async def last_inbound_id(self) -> int:
        async with self._mapped(PG_OP_TIMEOUT_S):
            value = await self._db().fetchval("SELECT COALESCE(MAX(id), 0) FROM tlsrpt_inbound")
        return int(value)

    async def received_policies(
        self, since: date, domain: str | None = None
    ) -> list[ReceivedPolicy]:
        rows = await self._received(INBOUND_POLICY_COLUMNS, "policies", since, domain)
        return [received_policy_from_row(r) for r in rows]

    async def received_failures(
        self, since: date, domain: str | None = None
    ) -> list[ReceivedFailure]:
        rows = await self._received(INBOUND_FAILURE_COLUMNS, "failures", since, domain)
        return [received_failure_from_row(r) for r in rows]

    async def _received(
        self, columns: str, table: str, since: date, domain: str | None
    ) -> list[Any]:
        sql = f"SELECT {columns} FROM tlsrpt_inbound_{table} WHERE day >= $1"
        args: list[Any] = [since]
        if domain is not None:
            sql += " AND domain = $2"
            args.append(domain)
        async with self._mapped(PG_OP_TIMEOUT_S):
            return list(await self._db().fetch(sql + " ORDER BY day, domain", *args))

    async def received_rows(
        self, after: int, upto: int
    ) -> tuple[list[ReceivedPolicy], list[ReceivedFailure]]:
        where = " WHERE rid > $1 AND rid <= $2"
        async with self._mapped(PG_OP_TIMEOUT_S):
            db = self._db()
            policies = await db.fetch(
                f"SELECT {INBOUND_POLICY_COLUMNS} FROM tlsrpt_inbound_policies" + where,
                after, upto,
            )  # fmt: skip
            failures = await db.fetch(
                f"SELECT {INBOUND_FAILURE_COLUMNS} FROM tlsrpt_inbound_failures" + where,
                after, upto,
            )  # fmt: skip
        return (
            [received_policy_from_row(r) for r in policies],
            [received_failure_from_row(r) for r in failures],
        )

    async def purge_inbound_before(self, moment: float) -> int:
        async with self._mapped(PG_OP_TIMEOUT_S), self._db().acquire() as conn, conn.transaction():
            for table in ("tlsrpt_inbound_policies", "tlsrpt_inbound_failures"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE rid IN"
                    " (SELECT id FROM tlsrpt_inbound WHERE received_at < $1)",
                    moment,
                )
            status = await conn.execute("DELETE FROM tlsrpt_inbound WHERE received_at < $1", moment)
        return int(status.split()[-1])

    def _db(self) -> Any:
        if self._pool is None:
            raise ReportStoreError("postgres: store is not open")
        return self._pool

    def _mapped(self, limit_s: float) -> contextlib.AbstractAsyncContextManager[None]:
        return mapped_errors(limit_s, ReportStoreError)


def _frozen_from_row(row: Any) -> FrozenReport:
    return FrozenReport(
        row["day"], row["domain"], row["report_id"], bytes(row["body"]),
        int(row["successful"]), int(row["failed"]), int(row["late"]),
    )  # fmt: skip
