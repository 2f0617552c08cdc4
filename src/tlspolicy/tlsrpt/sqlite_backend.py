"""The default TLSRPT store: one SQLite file (``tlsrpt.sqlite3`` next to the cache).

Rules kept here (besides those of ``store.py``):

* Every use of the connection happens in one worker thread, so the event loop never waits
  on disk (the same design as ``cache/sqlite_backend.py``).
* ``journal_mode=WAL`` with ``synchronous=NORMAL``: a power loss may lose the last
  transactions, never the file; the CLI (``tlspolicy tlsrpt status``) reads while the
  collector writes. Unlike the cache, this file is not moved aside when unusable: the counts
  are the report, so an unreadable file is an error to look at, not to replace.
* Every ``sqlite3``/OS error becomes ``ReportStoreError`` in ``_run``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from tlspolicy.db.sqlite_file import set_wal, write_transaction
from tlspolicy.db.sqlite_thread import SqliteThread
from tlspolicy.errors import ReportStoreError
from tlspolicy.files import create_private
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

T = TypeVar("T")

BUSY_TIMEOUT_S = 5.0  # another process's write lock; reporters hold it for milliseconds
DIR_MODE = 0o750

SCHEMA = """
CREATE TABLE IF NOT EXISTS tlsrpt_sessions (
    gkey TEXT PRIMARY KEY, day TEXT NOT NULL, domain TEXT NOT NULL, record TEXT NOT NULL,
    policy TEXT NOT NULL, successful INTEGER NOT NULL, failed INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tlsrpt_sessions_day ON tlsrpt_sessions (day, domain);
CREATE TABLE IF NOT EXISTS tlsrpt_failures (
    gkey TEXT NOT NULL, fkey TEXT NOT NULL, detail TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (gkey, fkey));
CREATE TABLE IF NOT EXISTS tlsrpt_deliveries (
    report_id TEXT NOT NULL, uri TEXT NOT NULL, day TEXT NOT NULL, domain TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, first_attempt REAL, last_attempt REAL,
    last_error TEXT, next_attempt REAL, delivered_at REAL,
    given_up INTEGER NOT NULL DEFAULT 0, lease_until REAL,
    PRIMARY KEY (report_id, uri));
CREATE INDEX IF NOT EXISTS tlsrpt_deliveries_day ON tlsrpt_deliveries (day, domain);
CREATE TABLE IF NOT EXISTS tlsrpt_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tlsrpt_reports (
    day TEXT NOT NULL, domain TEXT NOT NULL, report_id TEXT NOT NULL, body BLOB NOT NULL,
    successful INTEGER NOT NULL, failed INTEGER NOT NULL, late INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, domain));
CREATE TABLE IF NOT EXISTS tlsrpt_inbound (
    id INTEGER PRIMARY KEY AUTOINCREMENT, received_at REAL NOT NULL, transport TEXT NOT NULL,
    verdict TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', organization TEXT,
    report_id TEXT, signer TEXT, day TEXT, raw BLOB);
CREATE UNIQUE INDEX IF NOT EXISTS tlsrpt_inbound_key ON tlsrpt_inbound (organization, report_id)
    WHERE verdict = 'accepted';
CREATE INDEX IF NOT EXISTS tlsrpt_inbound_received ON tlsrpt_inbound (received_at);
CREATE TABLE IF NOT EXISTS tlsrpt_inbound_policies (
    rid INTEGER NOT NULL, pidx INTEGER NOT NULL, day TEXT NOT NULL, domain TEXT NOT NULL,
    organization TEXT NOT NULL, policy_type TEXT NOT NULL, successful INTEGER NOT NULL,
    failed INTEGER NOT NULL, PRIMARY KEY (rid, pidx));
CREATE INDEX IF NOT EXISTS tlsrpt_inbound_policies_day
    ON tlsrpt_inbound_policies (day, domain);
CREATE TABLE IF NOT EXISTS tlsrpt_inbound_failures (
    rid INTEGER NOT NULL, pidx INTEGER NOT NULL, fidx INTEGER NOT NULL, day TEXT NOT NULL,
    domain TEXT NOT NULL, organization TEXT NOT NULL, result_type TEXT NOT NULL,
    mx_host TEXT, receiving_ip TEXT, sending_ip TEXT, reason_code TEXT,
    count INTEGER NOT NULL, PRIMARY KEY (rid, pidx, fidx));
CREATE INDEX IF NOT EXISTS tlsrpt_inbound_failures_day
    ON tlsrpt_inbound_failures (day, domain);
"""
REPORT_COLUMNS = "day, domain, report_id, body, successful, failed, late"


class SqliteReportStore:
    """``ReportStore`` on one SQLite file; missing directories are created (mode 0750)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._thread = SqliteThread(str(self.path), error=ReportStoreError, what="store")
        self._conn: sqlite3.Connection | None = None  # worker thread only

    async def open(self) -> None:
        self._thread.start()
        await self._run(self._open_sync)

    async def aclose(self) -> None:
        if not self._thread.started:
            return
        try:
            await self._run(self._close_sync)
        finally:
            self._thread.stop()

    async def add(self, batch: Batch) -> None:
        await self._run(self._add_sync, batch)

    async def day_counts(self, day: date, domain: str | None = None) -> list[GroupCounts]:
        return await self._run(self._day_counts_sync, day, domain)

    async def days(self, since: date) -> list[date]:
        rows = await self._run(
            self._query, "SELECT DISTINCT day FROM tlsrpt_sessions WHERE day >= ? ORDER BY day",
            (since.isoformat(),),
        )  # fmt: skip
        return [date.fromisoformat(r[0]) for r in rows]

    async def deliveries(self, day: date, domain: str | None = None) -> list[Delivery]:
        sql = f"SELECT {DELIVERY_COLUMNS} FROM tlsrpt_deliveries WHERE day = ?"
        args: tuple[Any, ...] = (day.isoformat(),)
        if domain is not None:
            sql += " AND domain = ?"
            args += (domain,)
        rows = await self._run(self._query, sql + " ORDER BY domain, uri", args)
        return [delivery_from_row(r) for r in rows]

    async def claim(
        self, report_id: str, uri: str, day: date, domain: str, *, now: float, lease_s: float
    ) -> Delivery | None:
        return await self._run(self._claim_sync, report_id, uri, day, domain, now, lease_s)

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
        await self._run(
            self._execute,
            "UPDATE tlsrpt_deliveries SET attempts = attempts + 1,"
            " first_attempt = COALESCE(first_attempt, ?), last_attempt = ?, last_error = ?,"
            " next_attempt = ?, delivered_at = CASE WHEN ? IS NULL THEN ? END,"
            " given_up = ?, lease_until = NULL WHERE report_id = ? AND uri = ?",
            (now, now, error, next_attempt, error, now, int(given_up), report_id, uri),
        )

    async def purge_before(self, day: date) -> int:
        return await self._run(self._purge_sync, day.isoformat())

    async def instance(self) -> str:
        rows = await self._run(
            self._query, "SELECT value FROM tlsrpt_meta WHERE key = 'instance'", ()
        )
        return str(rows[0][0])

    async def frozen(self, day: date, domain: str) -> FrozenReport | None:
        rows = await self._run(
            self._query,
            f"SELECT {REPORT_COLUMNS} FROM tlsrpt_reports WHERE day = ? AND domain = ?",
            (day.isoformat(), domain),
        )
        return _frozen_from_row(rows[0]) if rows else None

    async def freeze(self, report: FrozenReport) -> FrozenReport:
        return await self._run(self._freeze_sync, report)

    async def note_late(self, day: date, domain: str, late: int) -> None:
        await self._run(
            self._execute,
            "UPDATE tlsrpt_reports SET late = ? WHERE day = ? AND domain = ?",
            (late, day.isoformat(), domain),
        )

    async def add_inbound(self, item: InboundItem) -> str:
        return await self._run(self._add_inbound_sync, item)

    async def inbound_events(self, after: int, limit: int) -> list[InboundEvent]:
        rows = await self._run(
            self._query,
            "SELECT id, transport, verdict FROM tlsrpt_inbound WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [InboundEvent(int(r[0]), r[1], r[2]) for r in rows]

    async def last_inbound_id(self) -> int:
        rows = await self._run(self._query, "SELECT COALESCE(MAX(id), 0) FROM tlsrpt_inbound", ())
        return int(rows[0][0])

    async def received_policies(
        self, since: date, domain: str | None = None
    ) -> list[ReceivedPolicy]:
        rows = await self._run(self._received, INBOUND_POLICY_COLUMNS, "policies", since, domain)
        return [received_policy_from_row(r) for r in rows]

    async def received_failures(
        self, since: date, domain: str | None = None
    ) -> list[ReceivedFailure]:
        rows = await self._run(self._received, INBOUND_FAILURE_COLUMNS, "failures", since, domain)
        return [received_failure_from_row(r) for r in rows]

    async def received_rows(
        self, after: int, upto: int
    ) -> tuple[list[ReceivedPolicy], list[ReceivedFailure]]:
        where = " WHERE rid > ? AND rid <= ?"
        policies = await self._run(
            self._query, f"SELECT {INBOUND_POLICY_COLUMNS} FROM tlsrpt_inbound_policies" + where,
            (after, upto),
        )  # fmt: skip
        failures = await self._run(
            self._query, f"SELECT {INBOUND_FAILURE_COLUMNS} FROM tlsrpt_inbound_failures" + where,
            (after, upto),
        )  # fmt: skip
        return (
            [received_policy_from_row(r) for r in policies],
            [received_failure_from_row(r) for r in failures],
        )

    async def purge_inbound_before(self, moment: float) -> int:
        return await self._run(self._purge_inbound_sync, moment)

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        return await self._thread.run(func, *args)

    # --- worker thread ---------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.OperationalError("store is not open")
        return self._conn

    def _open_sync(self) -> None:
        if self._conn is not None:
            return
        self.path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        create_private(self.path)  # 0600 before SQLite creates it 0644 (tlspolicy.files)
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            set_wal(conn, BUSY_TIMEOUT_S)
            conn.executescript(SCHEMA)  # idempotent: IF NOT EXISTS everywhere
            with write_transaction(conn) as db:
                db.execute(
                    "INSERT INTO tlsrpt_meta VALUES ('instance', ?) ON CONFLICT DO NOTHING",
                    (new_instance(),),
                )
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        return self._db().execute(sql, args).fetchall()

    def _execute(self, sql: str, args: tuple[Any, ...]) -> None:
        with write_transaction(self._db()) as db:
            db.execute(sql, args)

    def _add_sync(self, batch: Batch) -> None:
        sessions = [
            (group_hash(k), k.day.isoformat(), k.domain, k.record, k.policy.text,
             c.successful, c.failed)
            for k, c in batch.sessions.items()
        ]  # fmt: skip
        failures = [
            (group_hash(k), failure_hash(f), f.text, n) for (k, f), n in batch.failures.items()
        ]
        with write_transaction(self._db()) as db:
            db.executemany(
                "INSERT INTO tlsrpt_sessions VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (gkey) DO UPDATE SET"
                " successful = successful + excluded.successful,"
                " failed = failed + excluded.failed",
                sessions,
            )
            db.executemany(
                "INSERT INTO tlsrpt_failures VALUES (?, ?, ?, ?)"
                " ON CONFLICT (gkey, fkey) DO UPDATE SET count = count + excluded.count",
                failures,
            )

    def _day_counts_sync(self, day: date, domain: str | None) -> list[GroupCounts]:
        sql = (
            "SELECT gkey, domain, record, policy, successful, failed FROM tlsrpt_sessions"
            " WHERE day = ?"
        )
        args: tuple[Any, ...] = (day.isoformat(),)
        if domain is not None:
            sql += " AND domain = ?"
            args += (domain,)
        db = self._db()
        groups = []
        for gkey, dom, record, policy, ok, failed in db.execute(sql + " ORDER BY domain", args):
            failures = {
                FailureDetail.from_text(detail): count
                for detail, count in db.execute(
                    "SELECT detail, count FROM tlsrpt_failures WHERE gkey = ?", (gkey,)
                )
            }
            groups.append(
                GroupCounts(day, dom, record, PolicyKey.from_text(policy), ok, failed, failures)
            )
        return groups

    def _claim_sync(  # noqa: PLR0917 - called through functools.partial
        self, report_id: str, uri: str, day: date, domain: str, now: float, lease_s: float
    ) -> Delivery | None:
        with write_transaction(self._db()) as db:
            db.execute(
                "INSERT INTO tlsrpt_deliveries (report_id, uri, day, domain) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (report_id, uri) DO NOTHING",
                (report_id, uri, day.isoformat(), domain),
            )
            claimed = db.execute(
                "UPDATE tlsrpt_deliveries SET lease_until = ? WHERE report_id = ? AND uri = ?"
                " AND delivered_at IS NULL AND given_up = 0"
                " AND (next_attempt IS NULL OR next_attempt <= ?)"
                " AND (lease_until IS NULL OR lease_until <= ?)",
                (now + lease_s, report_id, uri, now, now),
            ).rowcount
            if not claimed:
                return None
            row = db.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM tlsrpt_deliveries WHERE report_id = ? AND uri = ?",
                (report_id, uri),
            ).fetchone()
        return delivery_from_row(row)

    def _freeze_sync(self, report: FrozenReport) -> FrozenReport:
        with write_transaction(self._db()) as db:
            db.execute(
                "INSERT INTO tlsrpt_reports VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (day, domain) DO NOTHING",
                (report.day.isoformat(), report.domain, report.report_id, report.body,
                 report.successful, report.failed, report.late),
            )  # fmt: skip
            row = db.execute(
                f"SELECT {REPORT_COLUMNS} FROM tlsrpt_reports WHERE day = ? AND domain = ?",
                (report.day.isoformat(), report.domain),
            ).fetchone()
        return _frozen_from_row(row)

    def _purge_sync(self, day: str) -> int:
        with write_transaction(self._db()) as db:
            db.execute(
                "DELETE FROM tlsrpt_failures WHERE gkey IN"
                " (SELECT gkey FROM tlsrpt_sessions WHERE day < ?)",
                (day,),
            )
            removed = db.execute("DELETE FROM tlsrpt_sessions WHERE day < ?", (day,)).rowcount
            db.execute("DELETE FROM tlsrpt_deliveries WHERE day < ?", (day,))
            db.execute("DELETE FROM tlsrpt_reports WHERE day < ?", (day,))
        return int(removed)

    def _add_inbound_sync(self, item: InboundItem) -> str:
        report = item.report
        values = (
            item.received_at, item.transport, item.verdict, item.reason,
            report.organization if report else None, report.report_id if report else None,
            item.signer, report.day.isoformat() if report else None, item.raw,
        )  # fmt: skip
        insert = (
            "INSERT INTO tlsrpt_inbound (received_at, transport, verdict, reason, organization,"
            " report_id, signer, day, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        with write_transaction(self._db()) as db:
            if report is None or item.verdict != Verdict.ACCEPTED:
                db.execute(insert, values)
                return item.verdict
            cursor = db.execute(
                insert + " ON CONFLICT (organization, report_id) WHERE verdict = 'accepted'"
                " DO NOTHING",
                values,
            )
            if not cursor.rowcount:
                dup = (*values[:2], Verdict.DUPLICATE, "already stored", *values[4:8], None)
                db.execute(insert, dup)
                return Verdict.DUPLICATE
            rid = cursor.lastrowid
            assert rid is not None
            policies, failures = inbound_rows(rid, report)
            db.executemany(
                "INSERT INTO tlsrpt_inbound_policies VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(*p[:2], p[2].isoformat(), *p[3:]) for p in policies],
            )
            db.executemany(
                "INSERT INTO tlsrpt_inbound_failures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*f[:3], f[3].isoformat(), *f[4:]) for f in failures],
            )
        return Verdict.ACCEPTED

    def _received(self, columns: str, table: str, since: date, domain: str | None) -> list[Any]:
        sql = f"SELECT {columns} FROM tlsrpt_inbound_{table} WHERE day >= ?"
        args: tuple[Any, ...] = (since.isoformat(),)
        if domain is not None:
            sql += " AND domain = ?"
            args += (domain,)
        return self._db().execute(sql + " ORDER BY day, domain", args).fetchall()

    def _purge_inbound_sync(self, moment: float) -> int:
        with write_transaction(self._db()) as db:
            for table in ("tlsrpt_inbound_policies", "tlsrpt_inbound_failures"):
                db.execute(
                    f"DELETE FROM {table} WHERE rid IN"
                    " (SELECT id FROM tlsrpt_inbound WHERE received_at < ?)",
                    (moment,),
                )
            removed = db.execute(
                "DELETE FROM tlsrpt_inbound WHERE received_at < ?", (moment,)
            ).rowcount
        return int(removed)


def _frozen_from_row(row: Any) -> FrozenReport:
    return FrozenReport(date.fromisoformat(row[0]), row[1], row[2], bytes(row[3]), *row[4:7])
