"""Count sessions per UTC day, report domain, TLSRPT record and policy: the in-memory batch.

Rules kept here:

* A session's day is the UTC date of the moment the collector received the datagram
  (RFC 8460 §4.1: reports cover whole UTC days). The time is passed in.
* The group key is (day, ``d``, ``pr``, policy), the policy being (type, domain, strings,
  mx-hosts). ``policy-domain`` comes from ``d`` when Postfix left it out (before 3.10.5
  no-policy-found had none), so every report carries one (RFC 8460 §4.4).
* A session counts once as successful or failed (``f``). Each distinct failure detail of a
  failed session adds one to that detail's ``failed-session-count``; two identical details
  in one session count once (the count is of sessions, RFC 8460 §4.4).
* Keys are also given as canonical JSON text (``PolicyKey.text``, ``FailureDetail.text``) so
  stores can key on them without knowing their fields.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from tlspolicy.tlsrpt.datagram import Datagram, FailureDetail, PolicyType


@dataclass(frozen=True, slots=True)
class PolicyKey:
    """What RFC 8460 §4.4 ``policy`` holds; ``policy_domain`` is never empty."""

    policy_type: PolicyType
    policy_domain: str
    policy_strings: tuple[str, ...] = ()
    mx_hosts: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return _canonical(
            [str(self.policy_type), self.policy_domain, self.policy_strings, self.mx_hosts]
        )

    @classmethod
    def from_text(cls, text: str) -> PolicyKey:
        kind, domain, strings, hosts = json.loads(text)
        return cls(PolicyType(kind), domain, tuple(strings), tuple(hosts))


@dataclass(frozen=True, slots=True)
class GroupKey:
    """The unit the store adds up: one policy as seen for one domain+record on one day."""

    day: date
    domain: str
    record: str
    policy: PolicyKey


@dataclass(frozen=True, slots=True)
class GroupCounts:
    """The stored counts of one group (one policy, one domain+record, one day)."""

    day: date
    domain: str
    record: str
    policy: PolicyKey
    successful: int
    failed: int
    failures: dict[FailureDetail, int] = field(default_factory=dict)


@dataclass(slots=True)
class SessionCounts:
    successful: int = 0
    failed: int = 0


@dataclass(slots=True)
class Batch:
    """Counts not yet written to the store; ``add`` is cheap and never fails."""

    sessions: dict[GroupKey, SessionCounts] = field(default_factory=dict)
    failures: Counter[tuple[GroupKey, FailureDetail]] = field(default_factory=Counter)
    datagrams: int = 0

    def add(self, datagram: Datagram, received_at: datetime) -> None:
        """Count one datagram received at ``received_at`` (timezone-aware, any zone)."""
        day = utc_day(received_at)
        self.datagrams += 1
        for policy in datagram.policies:
            key = GroupKey(
                day=day,
                domain=datagram.domain,
                record=datagram.record,
                policy=PolicyKey(
                    policy_type=policy.policy_type,
                    policy_domain=policy.policy_domain or datagram.domain,
                    policy_strings=policy.policy_strings,
                    mx_hosts=policy.mx_hosts,
                ),
            )
            counts = self.sessions.get(key)
            if counts is None:
                counts = self.sessions[key] = SessionCounts()
            if policy.failed:
                counts.failed += 1
            else:
                counts.successful += 1
            for failure in set(policy.failures):
                self.failures[(key, failure)] += 1

    def merge(self, other: Batch) -> None:
        """Add ``other``'s counts into this batch (a failed write is retried with more)."""
        for key, counts in other.sessions.items():
            mine = self.sessions.setdefault(key, SessionCounts())
            mine.successful += counts.successful
            mine.failed += counts.failed
        self.failures.update(other.failures)
        self.datagrams += other.datagrams

    def __bool__(self) -> bool:
        return bool(self.sessions)


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of an aware ``datetime``."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware time")
    return moment.astimezone(UTC).date()


def _canonical(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
