"""The "received reports" section of ``check``: a real SQLite TLSRPT store in tmp, filled by
the inbound receiver with our reporter's report, read by ``run_check``."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fakes import FakeDns, FakeFetcher
from tests.schemas.check_report import validate_check_report
from tests.unit.check.test_run import POLICY, Parts
from tests.unit.tlsrpt.inbound_vectors import gz, our_report
from tlspolicy.cache.backends.memory import MemoryBackend
from tlspolicy.cache.store import PolicyCache
from tlspolicy.check.findings import ExitStatus, Finding, Report, Section, Status
from tlspolicy.check.received import CHECK_PROBLEM, CHECK_REPORTS, check_received
from tlspolicy.check.render import render_human, to_json
from tlspolicy.check.run import CheckOptions, run_check
from tlspolicy.config import parse_config
from tlspolicy.dnsstub.data import AddressRecord, MxRecord
from tlspolicy.service.service import PolicyService
from tlspolicy.tlsrpt.inbound import Kind, Transport, Verdict
from tlspolicy.tlsrpt.inbound_explain import explain
from tlspolicy.tlsrpt.inbound_receive import receive_body
from tlspolicy.tlsrpt.sqlite_backend import SqliteReportStore
from tlspolicy.tlsrpt.store import ReceivedPolicy

DOMAIN = "sts.example"
AFTER_REPORT = datetime.datetime(2026, 6, 3, 12, 0, tzinfo=datetime.UTC)  # report day + 1
RECEIVED_AT = AFTER_REPORT.timestamp()


@pytest.fixture
async def parts() -> AsyncIterator[Parts]:
    dns = FakeDns()
    dns.set(DOMAIN, "MX", [MxRecord(10, f"mx.{DOMAIN}")])
    dns.set(f"mx.{DOMAIN}", "A", [AddressRecord("192.0.2.1")])
    config = parse_config({"cache": {"backend": "memory", "refresh_ahead": False}})
    cache = PolicyCache(MemoryBackend(max_entries=100), hot_entries=10, hot_ttl=5)
    fetcher = FakeFetcher({DOMAIN: POLICY})
    service = PolicyService(config, dns=dns, fetcher=fetcher, cache=cache)
    yield Parts(config, dns, fetcher, service)
    await service.aclose()


def with_store(parts: Parts, path: Path) -> Parts:
    config = parse_config({
        "cache": {"backend": "memory", "refresh_ahead": False},
        "tlsrpt": {"store": {"path": str(path)}},
    })  # fmt: skip
    return replace(parts, config=config)


async def fill(path: Path, *rids: str) -> None:
    store = SqliteReportStore(str(path))
    await store.open()
    try:
        for rid in rids:
            body = gz(our_report(domain=DOMAIN, rid=rid))
            result = await receive_body(
                body, Kind.GZIP, store, transport=Transport.HTTPS, now=RECEIVED_AT
            )
            assert result.verdict == Verdict.ACCEPTED
    finally:
        await store.aclose()


async def received_of(parts: Parts, now: datetime.datetime) -> tuple[Report, list[Finding]]:
    report = await run_check(parts, DOMAIN, CheckOptions(), prober=None, now=now)  # type: ignore[arg-type]
    return report, [f for f in report.findings if f.section is Section.RECEIVED]


async def test_received_failures_of_the_last_days_are_warnings_worst_first(
    parts: Parts, tmp_path: Path
) -> None:
    path = tmp_path / "tlsrpt.sqlite3"
    await fill(path, "one@sender.example", "two@sender.example")
    report, found = await received_of(with_store(parts, path), AFTER_REPORT)
    assert [(f.check, f.status) for f in found] == [
        (CHECK_PROBLEM, Status.WARNING),
        (CHECK_PROBLEM, Status.WARNING),
        (CHECK_REPORTS, Status.WARNING),
    ]
    assert found[0].message.startswith(
        "certificate-expired on mx2.sts.example, reported by 1 organization since Tuesday"
        " 2026-06-02 (14 failed sessions)"
    )
    assert found[1].message.startswith("certificate-host-mismatch on mx.sts.example")
    assert found[2].message == (
        "200 sessions since 2026-05-28, 20 failed (10.00%), reported by 1 organization"
    )
    assert found[2].evidence == ("2026-06-02: 200 sessions, 20 failed, from Sender Org",)
    assert report.exit_status is ExitStatus.WARNING
    text = render_human(report, verbose=True)
    assert "Received reports\n  ! certificate-expired on mx2.sts.example" in text
    assert "      2026-06-02: 200 sessions, 20 failed, from Sender Org" in text
    validate_check_report(to_json(report))
    sections = [s["section"] for s in to_json(report)["sections"]]
    assert sections.index("received") == sections.index("tlsrpt") + 1


async def test_received_reports_older_than_seven_days_are_left_out(
    parts: Parts, tmp_path: Path
) -> None:
    path = tmp_path / "tlsrpt.sqlite3"
    await fill(path, "one@sender.example")
    eight_days_later = AFTER_REPORT + datetime.timedelta(days=7)
    _, found = await received_of(with_store(parts, path), eight_days_later)
    assert [(f.status, f.message) for f in found] == [
        (Status.SKIPPED, "no TLSRPT report received for sts.example since 2026-06-04")
    ]
    six_days_later = AFTER_REPORT + datetime.timedelta(days=5)
    _, found = await received_of(with_store(parts, path), six_days_later)
    assert found[-1].message.startswith("100 sessions since 2026-06-02, 10 failed")


async def test_received_no_store_empty_store_and_broken_store_are_info_lines(
    parts: Parts, tmp_path: Path
) -> None:
    missing = tmp_path / "none" / "tlsrpt.sqlite3"
    report, found = await received_of(with_store(parts, missing), AFTER_REPORT)
    assert [(f.status, f.message) for f in found] == [
        (Status.SKIPPED, f"no TLSRPT store ({missing} does not exist): nothing received to show")
    ]
    assert not missing.parent.exists()  # check never creates the store
    assert not report.unknown  # the rest of the check ran

    empty = tmp_path / "empty.sqlite3"
    await fill(empty)
    _, found = await received_of(with_store(parts, empty), AFTER_REPORT)
    assert [(f.status, f.message) for f in found] == [
        (Status.SKIPPED, "no TLSRPT report received for sts.example since 2026-05-28")
    ]

    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(b"this is not an SQLite database, " * 100)
    report, found = await received_of(with_store(parts, broken), AFTER_REPORT)
    assert [f.status for f in found] == [Status.SKIPPED]
    assert found[0].message.startswith("TLSRPT store unavailable: ")
    assert not report.unknown


def test_received_only_successes_is_ok_and_other_domains_are_ignored() -> None:
    day = datetime.date(2026, 6, 2)
    policies = [
        ReceivedPolicy(day, DOMAIN, "Org A", "sts", 50, 0),
        ReceivedPolicy(day, DOMAIN, "Org B", "sts", 25, 0),
        ReceivedPolicy(day, "other.example", "Org A", "sts", 5, 5),
    ]
    explanation = explain(policies, [], since=datetime.date(2026, 5, 28))
    (found,) = check_received(DOMAIN, explanation)
    assert (found.check, found.status) == (CHECK_REPORTS, Status.OK)
    assert found.message == (
        "75 sessions since 2026-05-28, 0 failed (0.00%), reported by 2 organizations"
    )
