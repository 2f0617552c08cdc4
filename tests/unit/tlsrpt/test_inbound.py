"""Parsing, bounding and validating received reports (tlsrpt/inbound.py)."""

from __future__ import annotations

import copy
import gzip
import json
import os
import tracemalloc
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.schemas import validate_report
from tests.unit.tlsrpt.inbound_vectors import (
    POLICY_ITEM,
    RFC8460_EXAMPLE,
    gz,
    our_report,
    sys4_reporter,
)
from tlspolicy.errors import InboundReportError
from tlspolicy.tlsrpt import inbound
from tlspolicy.tlsrpt.inbound import Kind, Verdict, json_depth_ok, parse_report, report_json


def refused(data: bytes, kind: Kind = Kind.JSON) -> InboundReportError:
    with pytest.raises(InboundReportError) as info:
        parse_report(report_json(data, kind))
    return info.value


def test_inbound_rfc8460_example_parses_with_its_unknown_field() -> None:
    report = parse_report(json.dumps(RFC8460_EXAMPLE).encode())
    assert (report.organization, report.day) == ("Company-X", date(2016, 4, 1))
    (policy,) = report.policies
    assert (policy.policy_domain, policy.mx_hosts) == (
        "company-y.example",
        ("*.mail.company-y.example",),
    )
    assert (policy.successful, policy.failed) == (5326, 303)
    assert [(f.result_type, f.count) for f in policy.failures] == [
        ("certificate-expired", 100), ("starttls-not-supported", 200), ("validation-failure", 3)
    ]  # fmt: skip


def test_inbound_our_reporters_report_parses() -> None:
    report = our_report()
    validate_report(report)
    parsed = parse_report(report_json(gz(report), Kind.GZIP))
    (policy,) = parsed.policies
    assert (policy.successful, policy.failed) == (90, 10)
    assert sum(f.count for f in policy.failures) == 10


def test_inbound_sys4_reporters_report_parses(tmp_path: Path) -> None:
    sys4 = sys4_reporter(tmp_path)
    parsed = parse_report(report_json(sys4.gzipped, Kind.GZIP))
    assert parsed.organization == "sys4 test"
    (policy,) = parsed.policies
    assert (policy.successful, policy.failed) == (45, 5)
    assert policy.failures[0].result_type == "certificate-expired"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r.pop("report-id"), "report-id"),
        (lambda r: r.pop("policies"), "policies"),
        (lambda r: r["date-range"].update({"start-datetime": "yesterday"}), "start-datetime"),
        (lambda r: r["date-range"].update({"start-datetime": "2016-04-02T00:00:00Z"}), "after"),
        (lambda r: r["policies"][0]["policy"].update({"policy-type": "dane"}), "policy-type"),
        (
            lambda r: r["policies"][0]["summary"].update({"total-failure-session-count": -1}),
            "count",
        ),
        (
            lambda r: r["policies"][0]["summary"].update({"total-failure-session-count": True}),
            "count",
        ),
        (lambda r: r["policies"][0]["failure-details"][0].pop("result-type"), "result-type"),
        (lambda r: r["policies"][0]["policy"].pop("policy-domain"), "policy-domain"),
    ],
)
def test_inbound_invalid_reports_are_refused_with_the_reason(change: Any, reason: str) -> None:
    report = copy.deepcopy(RFC8460_EXAMPLE)
    change(report)
    error = refused(json.dumps(report).encode())
    assert error.verdict == Verdict.INVALID
    assert reason in error.reason


def test_inbound_not_json_and_not_utf8_are_invalid() -> None:
    assert refused(b"{not json").verdict == Verdict.INVALID
    assert "UTF-8" in refused(b'{"a": "\xff"}').reason
    assert refused(b"not gzip", Kind.GZIP).verdict == Verdict.INVALID
    assert "truncated" in refused(gz(RFC8460_EXAMPLE)[:-20], Kind.GZIP).reason


def test_inbound_gzip_bomb_stops_early_with_bounded_memory() -> None:
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))  # 64 MB of blanks in ~64 KB
    tracemalloc.start()
    try:
        error = refused(bomb, Kind.GZIP)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.verdict == Verdict.TOO_LARGE
    assert "ratio" in error.reason
    assert peak < 4 * inbound.MAX_REPORT_BYTES


def test_inbound_large_but_plausible_gzip_hits_the_size_limit() -> None:
    two_letters = bytes(b"ab"[i & 1] for i in range(256))
    noise = os.urandom(inbound.MAX_REPORT_BYTES + 1).translate(two_letters)  # ratio about 7
    error = refused(gzip.compress(noise), Kind.GZIP)
    assert error.verdict == Verdict.TOO_LARGE
    assert "inflates" in error.reason


def test_inbound_compressed_size_is_bounded() -> None:
    error = refused(os.urandom(inbound.MAX_COMPRESSED_BYTES + 1), Kind.GZIP)
    assert (error.verdict, "gzip body over" in error.reason) == (Verdict.TOO_LARGE, True)


def test_inbound_deep_json_is_refused_before_parsing() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    error = refused(deep)
    assert error.verdict == Verdict.TOO_LARGE and "deeper" in error.reason
    assert json_depth_ok(json.dumps(RFC8460_EXAMPLE).encode())
    assert json_depth_ok(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}')  # brackets in strings
    assert not json_depth_ok(b"[" * 17 + b"]" * 17)
    assert json_depth_ok(b"[" * 16 + b"]" * 16)


def test_inbound_too_many_policies_is_too_large() -> None:
    report = copy.deepcopy(RFC8460_EXAMPLE)
    item = POLICY_ITEM
    report["policies"] = [item] * (inbound.MAX_POLICIES + 1)
    error = refused(json.dumps(report).encode())
    assert error.verdict == Verdict.TOO_LARGE and "policies" in error.reason


def test_inbound_100000_policies_are_refused_by_size_with_bounded_memory() -> None:
    report = copy.deepcopy(RFC8460_EXAMPLE)
    item = POLICY_ITEM
    report["policies"] = [item] * 100_000
    body = gz(report)
    tracemalloc.start()
    try:
        error = refused(body, Kind.GZIP)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.verdict == Verdict.TOO_LARGE
    assert peak < 4 * inbound.MAX_REPORT_BYTES


def test_inbound_long_key_fields_are_bounded() -> None:
    report = copy.deepcopy(RFC8460_EXAMPLE)
    report["report-id"] = "x" * (inbound.MAX_ID_CHARS + 1)
    assert refused(json.dumps(report).encode()).verdict == Verdict.TOO_LARGE


def test_inbound_content_types() -> None:
    assert inbound.kind_of("application/tlsrpt+gzip") is Kind.GZIP
    assert inbound.kind_of("Application/TLSRPT+JSON; charset=utf-8") is Kind.JSON
    with pytest.raises(InboundReportError) as info:
        inbound.kind_of("application/json")
    assert info.value.verdict == Verdict.WRONG_TYPE
    assert inbound.kind_of_name("a!b!1!2!x.json.gz") is Kind.GZIP
    assert inbound.kind_of_name("report.json") is Kind.JSON
    assert inbound.kind_of_name("report.eml") is None
