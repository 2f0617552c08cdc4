"""The RFC 8460 report JSON: every report validates against the schema in tests/schemas."""

from __future__ import annotations

import json
from datetime import date

import jsonschema
import pytest

from tests.schemas import validate_report
from tlspolicy.tlsrpt.aggregate import GroupCounts, PolicyKey
from tlspolicy.tlsrpt.datagram import FailureDetail, PolicyType
from tlspolicy.tlsrpt.report import (
    MAX_FAILURE_DETAILS,
    MAX_POLICIES,
    build_report,
    day_bounds,
    format_report,
    report_id,
    totals,
)

DAY = date(2026, 12, 1)
STS = PolicyKey(
    PolicyType.STS, "example.com", ("version: STSv1", "mode: enforce"), ("mx.example.com",)
)
NPF = PolicyKey(PolicyType.NO_POLICY_FOUND, "example.com")
MISMATCH = FailureDetail(
    "certificate-host-mismatch", "192.0.2.1", "mx.example.com", None, "198.51.100.7"
)


RID = "20261201.example.com.0a1b2c3d.0123456789@mx.example.net"


def groups() -> list[GroupCounts]:
    old, new = "v=TLSRPTv1; rua=mailto:a@example.com", "v=TLSRPTv1;rua=mailto:a@example.com"
    return [
        GroupCounts(DAY, "example.com", old, STS, 5, 2, {MISMATCH: 2}),
        GroupCounts(DAY, "example.com", new, STS, 1, 1, {MISMATCH: 1}),
        GroupCounts(DAY, "example.com", new, NPF, 3, 0),
        GroupCounts(DAY, "other.example", "v=TLSRPTv1;rua=mailto:a@other.example", NPF, 9, 0),
    ]


def build() -> dict[str, object]:
    return build_report(
        DAY, "example.com", groups(), organization_name="Example Org",
        contact_info="postmaster@mx.example.net", rid=RID,
    )  # fmt: skip


def test_report_is_schema_valid_and_adds_up_across_records() -> None:
    report = build()
    validate_report(report)
    assert report["date-range"] == {
        "start-datetime": "2026-12-01T00:00:00Z",
        "end-datetime": "2026-12-01T23:59:59Z",
    }
    by_type = {p["policy"]["policy-type"]: p for p in report["policies"]}  # type: ignore[attr-defined]
    assert set(by_type) == {"sts", "no-policy-found"}
    assert by_type["sts"]["summary"] == {
        "total-successful-session-count": 6,
        "total-failure-session-count": 3,
    }
    assert by_type["sts"]["failure-details"] == [
        {
            "result-type": "certificate-host-mismatch",
            "sending-mta-ip": "192.0.2.1",
            "receiving-mx-hostname": "mx.example.com",
            "receiving-ip": "198.51.100.7",
            "failed-session-count": 3,
        }
    ]
    assert by_type["no-policy-found"]["policy"] == {
        "policy-type": "no-policy-found",
        "policy-domain": "example.com",
    }
    assert by_type["sts"]["policy"]["mx-host"] == ["mx.example.com"]


def test_report_is_deterministic_utf8_json() -> None:
    assert format_report(build()) == format_report(build_report(
        DAY, "example.com", list(reversed(groups())), organization_name="Example Org",
        contact_info="postmaster@mx.example.net", rid=RID,
    ))  # fmt: skip
    assert json.loads(format_report(build()).decode("utf-8")) == build()


def test_report_id_is_stable_and_unique_per_day_domain_and_store() -> None:
    rid = report_id(DAY, "example.com", "mx.example.net", "0a1b2c3d")
    assert rid == report_id(DAY, "example.com", "mx.example.net", "0a1b2c3d")
    assert rid.endswith("@mx.example.net") and rid.startswith("20261201.example.com.0a1b2c3d.")
    assert rid != report_id(date(2026, 12, 2), "example.com", "mx.example.net", "0a1b2c3d")
    assert rid != report_id(DAY, "example.com", "mx.example.net", "ffffffff")
    assert build()["report-id"] == RID


def test_report_day_bounds_and_totals() -> None:
    start, end = day_bounds(DAY)
    assert (end - start).total_seconds() == 86399
    assert totals(groups()) == (18, 3)


def test_report_schema_rejects_a_report_without_policy_domain() -> None:
    report = build()
    del report["policies"][0]["policy"]["policy-domain"]  # type: ignore[index]
    with pytest.raises(jsonschema.ValidationError):
        validate_report(report)


def test_report_caps_policies_and_details_keeping_counts_exact() -> None:
    many = []
    for i in range(250):
        policy = PolicyKey(
            PolicyType.TLSA, "example.com", (f"3 1 1 {i:064x}",), (f"mx{i}.example.com",)
        )
        failures = {
            FailureDetail(
                "validation-failure",
                receiving_ip=f"198.51.100.{j % 250}",
                additional_information=f"{i}-{j}",
            ): 1
            for j in range(40)
        }
        many.append(
            GroupCounts(
                DAY, "example.com", "v=TLSRPTv1;rua=mailto:a@example.com", policy, 10, 40, failures
            )
        )
    expired = {
        FailureDetail("certificate-expired", additional_information=str(j)): 1
        for j in range(10_000)
    }
    big = GroupCounts(DAY, "example.com", "r", STS, 1, 10_000, expired)
    report = build_report(
        DAY, "example.com", [*many, big], organization_name="o", contact_info="a@b.example",
        rid=RID,
    )  # fmt: skip
    validate_report(report)
    policies = report["policies"]
    assert len(policies) <= MAX_POLICIES
    assert all(len(p.get("failure-details", [])) <= MAX_FAILURE_DETAILS for p in policies)
    assert sum(p["summary"]["total-successful-session-count"] for p in policies) == 2501
    assert sum(p["summary"]["total-failure-session-count"] for p in policies) == 20_000
    for p in policies:
        details = sum(d["failed-session-count"] for d in p.get("failure-details", []))
        assert details == p["summary"]["total-failure-session-count"]
    assert len(format_report(report)) < 2_000_000
