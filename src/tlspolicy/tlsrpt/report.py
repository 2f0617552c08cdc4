"""Build the RFC 8460 §4 JSON report of one report domain for one UTC day.

Rules kept here:

* One report per (day, report domain ``d``). Counts of the same policy seen under
  different raw records (the record changed during the day) are added up: the record only
  says where to send, and the reporter looks it up again at send time.
* ``date-range`` is the whole UTC day, ``00:00:00Z`` to ``23:59:59Z`` (RFC 8460 §4.4's
  example). ``policy-domain`` is always present (``aggregate.py`` fills it from ``d``).
  ``policy-string`` and ``mx-host`` are arrays, left out when empty; ``mx-host`` is an array
  as libtlsrpt and the RFC's prose have it (the RFC example shows a string).
* ``failure-details`` uses the RFC's field names and leaves out fields Postfix did not give.
* The report id is ``<YYYYMMDD>.<domain>.<instance>.<hash>@<submitter>``. ``instance`` is
  the store's own random id (made when the store is created), so two MTAs with their own
  stores never give two different reports one id (receivers de-duplicate by id); MTAs that
  share one PostgreSQL store share one instance and send one report between them.
* Size is bounded whatever the counts: at most ``MAX_POLICIES`` policies per report and
  ``MAX_FAILURE_DETAILS`` failure details per policy. What is over a cap is merged, not
  dropped: the policies with the fewest sessions become one policy per policy type with
  only ``policy-type`` and ``policy-domain``, the rarest failure details one detail per
  result type with only its count. Every session count stays exact; only detail goes.
* Output is deterministic: policies and failure details are sorted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from tlspolicy.tlsrpt.aggregate import GroupCounts, PolicyKey
from tlspolicy.tlsrpt.datagram import FailureDetail, PolicyType

MAX_POLICIES = 100  # policies per report; beyond: merged per policy type
MAX_FAILURE_DETAILS = 100  # failure details per policy; beyond: merged per result type

_DETAIL_FIELDS = (
    ("sending_mta_ip", "sending-mta-ip"),
    ("receiving_mx_hostname", "receiving-mx-hostname"),
    ("receiving_mx_helo", "receiving-mx-helo"),
    ("receiving_ip", "receiving-ip"),
    ("additional_information", "additional-information"),
    ("failure_reason_code", "failure-reason-code"),
)


@dataclass(slots=True)
class _PolicyTotals:
    successful: int = 0
    failed: int = 0
    failures: dict[FailureDetail, int] = field(default_factory=dict)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The first and the last second of a UTC day."""
    start = datetime.combine(day, time(0, 0, 0), tzinfo=UTC)
    return start, start + timedelta(days=1, seconds=-1)


def report_id(day: date, domain: str, submitter: str, instance: str) -> str:
    """``<YYYYMMDD>.<domain>.<instance>.<hash>@<submitter>``: unique per store, stable, and
    Message-ID shaped."""
    raw = f"{day}\0{domain}\0{submitter}\0{instance}"
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    return f"{day:%Y%m%d}.{domain}.{instance}.{digest}@{submitter}"


def totals(groups: Iterable[GroupCounts]) -> tuple[int, int]:
    """(successful, failed) sessions over ``groups``."""
    ok = failed = 0
    for group in groups:
        ok += group.successful
        failed += group.failed
    return ok, failed


def build_report(
    day: date,
    domain: str,
    groups: Iterable[GroupCounts],
    *,
    organization_name: str,
    contact_info: str,
    rid: str,
) -> dict[str, Any]:
    """The report as a JSON-ready dict (``format_report`` makes the bytes).

    Args:
        day: the UTC day covered.
        domain: the report domain (``d``); groups of other domains are ignored.
        groups: the stored counts of that day.
        rid: the report id (``report_id``, or the one a frozen report already has).
    """
    merged: dict[PolicyKey, _PolicyTotals] = {}
    for group in groups:
        if group.domain != domain or group.day != day:
            continue
        t = merged.setdefault(group.policy, _PolicyTotals())
        t.successful += group.successful
        t.failed += group.failed
        for key, count in group.failures.items():
            t.failures[key] = t.failures.get(key, 0) + count
    merged = _capped_policies(merged, domain)
    start, end = day_bounds(day)
    return {
        "organization-name": organization_name,
        "date-range": {
            "start-datetime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end-datetime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "contact-info": contact_info,
        "report-id": rid,
        "policies": [_policy(key, merged[key]) for key in sorted(merged, key=lambda k: k.text)],
    }


def _capped_policies(
    merged: dict[PolicyKey, _PolicyTotals], domain: str
) -> dict[PolicyKey, _PolicyTotals]:
    """At most ``MAX_POLICIES`` policies, each with at most ``MAX_FAILURE_DETAILS`` details."""
    if len(merged) > MAX_POLICIES:
        ranked = sorted(merged, key=lambda k: (-merged[k].failed, -merged[k].successful, k.text))
        kept = {k: merged[k] for k in ranked[: MAX_POLICIES - len(PolicyType)]}
        for key in ranked[len(kept) :]:
            rest = kept.setdefault(PolicyKey(key.policy_type, domain), _PolicyTotals())
            t = merged[key]
            rest.successful += t.successful
            rest.failed += t.failed
            for detail, count in t.failures.items():
                rest.failures[detail] = rest.failures.get(detail, 0) + count
        merged = kept
    for t in merged.values():
        if len(t.failures) > MAX_FAILURE_DETAILS:
            ranked_details = sorted(t.failures, key=lambda d: (-t.failures[d], d.text))
            capped = {d: t.failures[d] for d in ranked_details[: MAX_FAILURE_DETAILS // 2]}
            for detail in ranked_details[len(capped) :]:
                only_type = FailureDetail(detail.result_type)
                capped[only_type] = capped.get(only_type, 0) + t.failures[detail]
            t.failures = capped
    return merged


def format_report(report: dict[str, Any]) -> bytes:
    """I-JSON bytes (RFC 7493: UTF-8)."""
    return json.dumps(report, ensure_ascii=False, indent=1).encode("utf-8")


def _policy(key: PolicyKey, t: _PolicyTotals) -> dict[str, Any]:
    policy: dict[str, Any] = {"policy-type": str(key.policy_type)}
    if key.policy_strings:
        policy["policy-string"] = list(key.policy_strings)
    policy["policy-domain"] = key.policy_domain
    if key.mx_hosts:
        policy["mx-host"] = list(key.mx_hosts)
    item: dict[str, Any] = {
        "policy": policy,
        "summary": {
            "total-successful-session-count": t.successful,
            "total-failure-session-count": t.failed,
        },
    }
    if t.failures:
        item["failure-details"] = [
            _detail(k, t.failures[k]) for k in sorted(t.failures, key=lambda k: k.text)
        ]
    return item


def _detail(key: FailureDetail, count: int) -> dict[str, Any]:
    detail: dict[str, Any] = {"result-type": key.result_type}
    for attr, name in _DETAIL_FIELDS:
        value = getattr(key, attr)
        if value is not None:
            detail[name] = value
    detail["failed-session-count"] = count
    return detail
