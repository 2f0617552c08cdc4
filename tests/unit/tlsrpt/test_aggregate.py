"""Counting sessions per UTC day, domain, record and policy."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from tests.unit.tlsrpt.helpers import MISMATCH, NO_POLICY_OK, RECORD, datagram, sts_policy
from tlspolicy.tlsrpt.aggregate import Batch, GroupKey, PolicyKey, utc_day
from tlspolicy.tlsrpt.datagram import FailureDetail, PolicyType, parse_datagram

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_aggregate_counts_success_and_failure_per_policy() -> None:
    batch = Batch()
    ok = parse_datagram(datagram(sts_policy()))
    bad = parse_datagram(datagram(sts_policy(failed=True, details=[MISMATCH])))
    for d in (ok, ok, bad):
        batch.add(d, NOON)
    (key,) = batch.sessions
    assert (batch.sessions[key].successful, batch.sessions[key].failed) == (2, 1)
    assert key.day == date(2026, 12, 1)
    assert key.policy.policy_type is PolicyType.STS
    failure = FailureDetail("certificate-host-mismatch", "192.0.2.1", "mx.example.com", None,
                         "198.51.100.7")  # fmt: skip
    assert batch.failures == {(key, failure): 1}
    assert batch.datagrams == 3


def test_aggregate_policy_domain_defaults_to_report_domain() -> None:
    batch = Batch()
    batch.add(parse_datagram(datagram(NO_POLICY_OK, domain="rpt.example")), NOON)
    (key,) = batch.sessions
    assert key.policy == PolicyKey(PolicyType.NO_POLICY_FOUND, "rpt.example")


def test_aggregate_distinct_records_and_days_are_separate_groups() -> None:
    batch = Batch()
    dg = parse_datagram(datagram(NO_POLICY_OK))
    other = parse_datagram(datagram(NO_POLICY_OK, record=RECORD + "; x=y"))
    batch.add(dg, NOON)
    batch.add(other, NOON)
    batch.add(dg, NOON + timedelta(hours=12))  # 00:00 the next day
    assert sorted((k.day.day, k.record[-3:]) for k in batch.sessions) == [
        (1, "com"), (1, "x=y"), (2, "com")
    ]  # fmt: skip


def test_aggregate_day_is_utc_not_local() -> None:
    local = datetime(2026, 12, 2, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    assert utc_day(local) == date(2026, 12, 1)
    with pytest.raises(ValueError):
        utc_day(datetime(2026, 12, 1))


def test_aggregate_identical_details_in_one_session_count_once() -> None:
    batch = Batch()
    batch.add(parse_datagram(datagram(sts_policy(failed=True, details=[MISMATCH, MISMATCH]))), NOON)
    assert list(batch.failures.values()) == [1]


def test_aggregate_merge_adds_up() -> None:
    a, b = Batch(), Batch()
    dg = parse_datagram(datagram(sts_policy(failed=True, details=[MISMATCH])))
    a.add(dg, NOON)
    b.add(dg, NOON)
    b.add(dg, NOON)
    a.merge(b)
    (counts,) = a.sessions.values()
    assert counts.failed == 3 and list(a.failures.values()) == [3] and a.datagrams == 3


def test_aggregate_keys_round_trip_through_text() -> None:
    policy = PolicyKey(PolicyType.STS, "example.com", ("a", "b\u00e9"), ("*.example.com",))
    assert PolicyKey.from_text(policy.text) == policy
    failure = FailureDetail("validation-failure", None, "mx", None, "1.2.3.4", None, "x")
    assert FailureDetail.from_text(failure.text) == failure
    assert isinstance(GroupKey(NOON.date(), "d", "r", policy), GroupKey)
