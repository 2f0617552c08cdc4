"""The findings model: one line per check, grouped by section, and the exit status.

Pure. A ``Finding`` is one checked fact with a status and a one-line reason; ``Report``
orders them by section and picks the one thing to fix first: the first error in section
order (the sections follow the order in which a sender meets them, so the earliest fault
explains the later ones), else the first warning. The "senders" section summarises the
others and is chosen only when nothing else is wrong.

Exit status (docs/check.md): 0 all good, 1 warnings, 2 errors, 3 the check itself could not run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"
    SKIPPED = "skipped"  # not checked (``--no-smtp``, nothing to match against, ...)


class Section(StrEnum):
    """Sections in display order (the order a sender meets them)."""

    MX = "mx"
    STS_RECORD = "mta-sts-record"
    STS_POLICY = "mta-sts-policy"
    SMTP = "smtp"
    DANE = "dane"
    TLSRPT = "tlsrpt"
    RECEIVED = "received"  # what senders reported (check/received.py)
    SENDERS = "senders"


TITLES = {
    Section.MX: "MX",
    Section.STS_RECORD: "MTA-STS record",
    Section.STS_POLICY: "MTA-STS policy",
    Section.SMTP: "SMTP STARTTLS",
    Section.DANE: "DANE",
    Section.TLSRPT: "TLSRPT",
    Section.RECEIVED: "Received reports",
    Section.SENDERS: "What senders will do",
}
_ORDER = {section: index for index, section in enumerate(Section)}


class ExitStatus(IntEnum):
    OK = 0
    WARNING = 1
    ERROR = 2
    UNKNOWN = 3  # the check could not run (no resolver, no network)


@dataclass(frozen=True, slots=True)
class Finding:
    """One checked fact.

    Attributes:
        section: where it is shown.
        check: a stable dotted key for scripts (``smtp.certificate-expiry``).
        status: the verdict.
        message: one line an operator understands.
        subject: what was checked (a host, ``host[address]``, a record name); "" for the
            domain as a whole.
        evidence: what was seen (records, certificates, matches), shown by ``--verbose``.
    """

    section: Section
    check: str
    status: Status
    message: str
    subject: str = ""
    evidence: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "section": self.section.value,
            "check": self.check,
            "status": self.status.value,
            "subject": self.subject,
            "message": self.message,
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class Report:
    """Everything ``check`` found for one domain.

    Attributes:
        domain: the checked domain (A-label).
        findings: in section order, then in the order they were made.
        unknown: why the check could not run ("" when it ran); forces exit status 3.
        facts: extra machine-readable facts for ``--json`` (reply, certificate days, ...).
    """

    domain: str
    findings: tuple[Finding, ...]
    unknown: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        domain: str,
        findings: Iterable[Finding],
        *,
        unknown: str = "",
        facts: dict[str, Any] | None = None,
    ) -> Report:
        ordered = sorted(findings, key=lambda f: _ORDER[f.section])  # stable within a section
        return cls(domain, tuple(ordered), unknown, dict(facts or {}))

    def count(self, status: Status) -> int:
        return sum(1 for f in self.findings if f.status is status)

    @property
    def exit_status(self) -> ExitStatus:
        if self.unknown:
            return ExitStatus.UNKNOWN
        if self.count(Status.ERROR):
            return ExitStatus.ERROR
        if self.count(Status.WARNING):
            return ExitStatus.WARNING
        return ExitStatus.OK

    @property
    def first_fix(self) -> Finding | None:
        """The one thing to fix first, or None when all is well."""
        for status in (Status.ERROR, Status.WARNING):
            for senders_last in (False, True):
                for finding in self.findings:
                    is_senders = finding.section is Section.SENDERS
                    if finding.status is status and is_senders == senders_last:
                        return finding
        return None

    def sections(self) -> list[tuple[Section, list[Finding]]]:
        """Non-empty sections in display order."""
        grouped: dict[Section, list[Finding]] = {}
        for finding in self.findings:
            grouped.setdefault(finding.section, []).append(finding)
        return [(s, grouped[s]) for s in Section if s in grouped]
