"""Drift: enforce policies that stop covering the MX, dane-only domains whose MX turned
insecure; the pure checks, and the server's warning once per change."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace

import pytest

from tests.unit.cache.helpers import make_sts_entry
from tests.unit.service.test_service import Clock, make_service, make_world
from tlspolicy.cache.entry import DaneBranch
from tlspolicy.control.drift import MAX_LISTED, dane_drift, entry_drift, new_drift, policy_mx_drift
from tlspolicy.dane.result import DaneLevel, DaneResult, HostResult
from tlspolicy.dnsstub.data import MxRecord
from tlspolicy.metrics.sink import NullMetrics
from tlspolicy.mtasts.policy import parse_policy

NOW = 1_800_000_000.0
ENFORCE = parse_policy(
    "version: STSv1\nmode: enforce\nmx: mx1.a.example\nmx: *.b.example\nmax_age: 86400\n"
)


def _dane(*hosts: str, level: DaneLevel = DaneLevel.NONE, secure: bool = True) -> DaneResult:
    found = tuple(HostResult(h, "secure") for h in hosts)
    return DaneResult(level, "r", 300, mx_secure=secure, hosts=found)


def test_policy_mx_drift_names_the_uncovered_hosts() -> None:
    assert policy_mx_drift(ENFORCE, ["mx1.a.example", "x.b.example"]) is None
    drift = policy_mx_drift(ENFORCE, ["mx1.a.example", "MX2.A.example.", "deep.x.b.example"])
    assert drift is not None and drift.kind == "mta_sts"
    assert drift.hosts == ("mx2.a.example", "deep.x.b.example")
    assert "does not cover MX mx2.a.example, deep.x.b.example" in drift.detail
    testing = parse_policy("version: STSv1\nmode: testing\nmx: mx1.a.example\nmax_age: 86400\n")
    assert policy_mx_drift(testing, ["other.example"]) is None
    assert policy_mx_drift(None, ["other.example"]) is None
    assert policy_mx_drift(ENFORCE, []) is None


def test_dane_drift_only_from_dane_only_to_an_insecure_mx() -> None:
    was = _dane("mx.a.example", level=DaneLevel.DANE_ONLY)
    assert dane_drift(was, _dane("mx.a.example", secure=False)) is not None
    assert dane_drift(was, _dane("mx.a.example", secure=True)) is None
    assert dane_drift(_dane("mx", level=DaneLevel.DANE), _dane("mx", secure=False)) is None
    assert dane_drift(None, _dane("mx", secure=False)) is None


def test_entry_drift_and_new_drift_report_each_change_once() -> None:
    base = make_sts_entry("a.example", NOW)  # policy mx mail.example.com
    covered = replace(base, dane=DaneBranch(_dane("mail.example.com"), NOW, NOW + 300))
    moved = replace(base, dane=DaneBranch(_dane("other.example"), NOW, NOW + 300))
    assert entry_drift(covered) is None
    assert entry_drift(moved) is not None
    assert [d.kind for d in new_drift(covered, moved)] == ["mta_sts"]
    assert new_drift(moved, replace(moved, hits=3)) == []  # the same drift again: quiet
    assert [d.kind for d in new_drift(None, moved)] == ["mta_sts"]


class Counting(NullMetrics):
    def __init__(self) -> None:
        self.drifts: Counter[str] = Counter()

    def drift(self, kind: str) -> None:
        self.drifts[kind] += 1


async def test_server_warns_once_when_a_dane_only_mx_turns_insecure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "tlspolicy.service")  # a CLI test may raise the root level
    dns, fetcher = make_world()
    clock = Clock()
    edge = make_service(dns, fetcher, clock)
    metrics = Counting()
    edge.service.lookups.metrics = metrics
    await edge.cache.open()
    assert await edge.answer("QUERY", "dane.example") == "OK dane-only"
    dns.set("dane.example", "MX", [MxRecord(10, "mx.dane.example")], secure=False)
    clock.now += 400  # the DANE result (ttl 300) expired: looked up again
    await edge.answer("QUERY", "dane.example")
    clock.now += 400
    await edge.answer("QUERY", "dane.example")
    assert caplog.text.count("dane.example: policy drift: MX RRset no longer DNSSEC-secure") == 1
    assert metrics.drifts == Counter({"dane": 1})


def test_policy_mx_drift_detail_names_a_few_items_and_counts_the_rest() -> None:
    """A 2,498-pattern policy made a 50 KB warning line: each list is cut after a few."""
    patterns = "".join(f"mx: mx{n}.a.example\n" for n in range(100))
    policy = parse_policy(f"version: STSv1\nmode: enforce\n{patterns}max_age: 86400\n")
    hosts = [f"other{n}.example" for n in range(40)]
    drift = policy_mx_drift(policy, hosts)
    assert drift is not None and len(drift.hosts) == 40  # the metric and JSON keep them all
    assert f"mx4.a.example and {100 - MAX_LISTED} more" in drift.detail
    assert f"other4.example and {40 - MAX_LISTED} more: mail" in drift.detail
    assert len(drift.detail) < 300
