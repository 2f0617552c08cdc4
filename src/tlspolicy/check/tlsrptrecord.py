"""The ``_smtp._tls`` TLSRPT record (RFC 8460 §3), explained. Pure.

The verdict is the strict parser the reporter uses (``tlsrpt.record.select_record``). A
``rua`` URI that parses but cannot be used (a ``mailto:`` without a valid address, an
``https:`` URL without a host, another scheme) is an error: reports to it are never sent.
No record is fine (reports are optional), so it is not a warning.
"""

from __future__ import annotations

from tlspolicy.check.findings import Finding, Section, Status
from tlspolicy.check.stsrecord import record_text
from tlspolicy.dnsstub.data import DnsAnswer, TxtRecord
from tlspolicy.errors import RecordSyntaxError
from tlspolicy.tlsrpt.record import select_record


def check_tlsrpt(name: str, answer: DnsAnswer) -> list[Finding]:
    records = [r for r in answer.records if isinstance(r, TxtRecord)]
    evidence = (*(f"TXT {record_text(r)!r}" for r in records), f"DNSSEC: {answer.status}")
    try:
        record = select_record(records)
    except RecordSyntaxError as exc:
        message = f"invalid record: {exc}: senders send no reports"
        return [_f(Status.ERROR, message, name, evidence)]
    if record is None:
        near = [t for t in map(record_text, records) if t.lower().lstrip().startswith("v=tlsrpt")]
        if near:
            message = f"record {near[0]!r} is not 'v=TLSRPTv1;...': senders send no reports"
            return [_f(Status.ERROR, message, name, evidence)]
        return [
            _f(Status.OK, "no TLSRPT record (optional: you get no failure reports)", name, evidence)
        ]
    findings: list[Finding] = []
    for uri in record.unsupported:
        findings.append(
            _f(
                Status.ERROR,
                f"rua {uri!r} is not usable: {_why(uri)}: no reports go there",
                name,
                evidence,
                "tlsrpt.rua",
            )
        )
    if record.destinations:
        targets = ", ".join(d.uri for d in record.destinations)
        findings.insert(0, _f(Status.OK, f"valid, reports to {targets}", name, evidence))
    return findings


def _why(uri: str) -> str:
    scheme = uri.partition(":")[0].lower()
    if scheme == "mailto":
        return "not a mail address (mailto:user@domain)"
    if scheme == "https":
        return "no host (https://host/path)"
    return f"scheme {scheme!r} (only mailto: and https: exist, RFC 8460 §3)"


def _f(
    status: Status,
    message: str,
    subject: str,
    evidence: tuple[str, ...],
    check: str = "tlsrpt.record",
) -> Finding:
    return Finding(Section.TLSRPT, check, status, message, subject, evidence)
