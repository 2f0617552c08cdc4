"""The ``_mta-sts`` TXT record, explained (RFC 8461 §3.1). Pure.

The verdict "valid or not" is the server's own parser (``mtasts.record.select_record``);
this module only adds the precise words: which record, which deviation (extra spaces, two
records, wrong version, id too long), and near misses that the parser ignores as "not an
STS record" but that the publisher obviously meant as one (``v=stsv1``, ``v = STSv1``).
"""

from __future__ import annotations

import re

from tlspolicy.check.findings import Finding, Section, Status
from tlspolicy.dnsstub.data import DnsAnswer, TxtRecord
from tlspolicy.errors import RecordSyntaxError
from tlspolicy.mtasts.record import MAX_ID_CHARS, NoRecordError, StsRecord, select_record

_NEAR_MISS_RE = re.compile(r"\s*v\s*=\s*sts", re.IGNORECASE)
_ID_FIELD_RE = re.compile(r"id=([^;]*)")
_ID_CHARS_RE = re.compile(r"[A-Za-z0-9]+")


def record_text(record: TxtRecord) -> str:
    """The strings of one TXT RR joined without a separator (RFC 8461 §3.1), for display."""
    return b"".join(record.strings).decode("utf-8", "backslashreplace")


def check_sts_record(name: str, answer: DnsAnswer) -> tuple[StsRecord | None, bool, list[Finding]]:
    """Judge the TXT RRset at ``_mta-sts.<domain>``.

    Returns:
        (the record the server would use or None, whether any record looks like an STS
        record at all, the findings).
    """
    texts = [record_text(r) for r in answer.records if isinstance(r, TxtRecord)]
    evidence = tuple(f"TXT {t!r}" for t in texts) + _dns_evidence(answer)
    records = [r for r in answer.records if isinstance(r, TxtRecord)]
    try:
        record = select_record(records)
    except NoRecordError:
        near = [t for t in texts if _NEAR_MISS_RE.match(t)]
        if near:
            why = near_miss(near[0])
            message = f"{why}: senders see no MTA-STS record"
            return None, True, [_finding(Status.ERROR, message, name, evidence)]
        message = "no v=STSv1 record: the domain does not publish MTA-STS"
        return None, False, [_finding(Status.OK, message, name, evidence)]
    except RecordSyntaxError as exc:
        candidates = [t for t in texts if t.startswith("v=STSv1")]
        if len(candidates) > 1:
            message = (
                f"{len(candidates)} v=STSv1 records: senders ignore all of them "
                "(RFC 8461 §3.1 allows exactly one)"
            )
        else:
            detail = explain_broken(candidates[0]) if candidates else str(exc)
            message = f"invalid record: {detail}: senders ignore it"
        return None, True, [_finding(Status.ERROR, message, name, evidence)]
    findings = [_finding(Status.OK, f"valid, id={record.id}", name, evidence)]
    candidate = next(t for t in texts if t.startswith("v=STSv1"))
    if re.match(r"v=STSv1[ \t]+;", candidate):
        findings.append(
            _finding(
                Status.WARNING,
                "space before ';' after v=STSv1: allowed by the grammar, but some senders "
                "test for 'v=STSv1;' (erratum 6285); remove it",
                name,
                evidence,
                check="mta-sts-record.spacing",
            )
        )
    return record, True, findings


def near_miss(text: str) -> str:
    """Why a record that looks meant as MTA-STS is not one."""
    if text[:1].isspace():
        return "the record starts with a space"
    head = text.split(";", 1)[0]
    if " " in head.split("=", 1)[0] or head.split("=", 1)[-1][:1] == " ":
        return f"spaces around '=' in {head.strip()!r} (write v=STSv1)"
    version = head.split("=", 1)[-1].strip()
    if version.lower() == "stsv1":
        return f"version {version!r} has the wrong case (write exactly v=STSv1)"
    if version.startswith("STSv1"):
        return f"no ';' after v=STSv1 in {head.strip()!r}"
    return f"wrong version {version!r} (only v=STSv1 exists)"


def explain_broken(text: str) -> str:
    """A precise reason for an STS record the parser rejects."""
    found = _ID_FIELD_RE.search(text)
    if found is None:
        return "no id field (add id=<1 to 32 letters or digits>)"
    value = found.group(1).strip(" \t")
    if " " in value or "\t" in value:
        return f"space inside the id {value!r}"
    if len(value) > MAX_ID_CHARS:
        return f"id has {len(value)} characters, at most {MAX_ID_CHARS} are allowed"
    if not value:
        return "the id is empty"
    if _ID_CHARS_RE.fullmatch(value) is None:
        return f"id {value!r} has characters other than letters and digits"
    try:
        select_record([TxtRecord((text.encode("utf-8", "replace"),))])
    except RecordSyntaxError as exc:
        return str(exc)
    return "rejected by the parser"  # pragma: no cover - only called for rejected records


def _dns_evidence(answer: DnsAnswer) -> tuple[str, ...]:
    lines = [f"DNSSEC: {answer.status}"]
    lines += [f"CNAME {owner} -> {target}" for owner, target in answer.cnames]
    return tuple(lines)


def _finding(
    status: Status,
    message: str,
    name: str,
    evidence: tuple[str, ...],
    *,
    check: str = "mta-sts-record.grammar",
) -> Finding:
    return Finding(Section.STS_RECORD, check, status, message, name, evidence)
