"""The MTA-STS policy file, explained line by line, and its MX coverage (RFC 8461 §3.2, §4.1).

Pure. Whether the policy is valid is decided by the server's own parser
(``mtasts.policy.parse_policy``); this module adds what a strict parser does not say:
mixed line endings, unknown or mis-cased field names, duplicate fields that are ignored,
a ``max_age`` below one day, the mode, and which MX hosts the ``mx`` patterns cover.
"""

from __future__ import annotations

from collections.abc import Sequence

from tlspolicy.check.findings import Finding, Section, Status
from tlspolicy.errors import PolicySyntaxError
from tlspolicy.mtasts.policy import Mode, Policy, mx_matches, parse_policy

KNOWN_FIELDS = ("version", "mode", "max_age", "mx")
ONE_DAY_S = 86400  # below this, a policy barely outlives an outage (RFC 8461 §3.2 advice)


def check_policy(text: str) -> tuple[Policy | None, list[Finding]]:
    """Judge a fetched policy body.

    Returns:
        (the policy as the server parses it, or None when it is invalid; the findings).
    """
    lines = _split(text)
    evidence = tuple(f"{n:>3}: {line!r}" for n, line in enumerate(lines, start=1))
    findings = _line_notes(text, lines)
    try:
        policy = parse_policy(text)
    except PolicySyntaxError as exc:
        where = f"line {exc.line}: " if exc.line else ""
        hint = _hint(exc, lines)
        message = (
            f"invalid policy: {where}{exc.why}{hint}: senders treat the domain as without MTA-STS"
        )
        return None, [_grammar(Status.ERROR, message, evidence), *findings]
    findings.insert(0, _grammar(Status.OK, f"valid ({len(lines)} lines)", evidence))
    findings.append(_mode(policy))
    if policy.max_age < ONE_DAY_S:
        findings.append(
            Finding(
                Section.STS_POLICY,
                "mta-sts-policy.max-age",
                Status.WARNING,
                f"max_age {policy.max_age} s is below one day: senders forget the policy "
                "quickly (use at least 86400, typically 604800 or more)",
            )
        )
    else:
        findings.append(
            Finding(
                Section.STS_POLICY, "mta-sts-policy.max-age", Status.OK,
                f"max_age {policy.max_age} s ({_days(policy.max_age)})",
            )
        )  # fmt: skip
    findings.extend(
        Finding(Section.STS_POLICY, "mta-sts-policy.adjusted", Status.WARNING, change)
        for change in policy.notes  # what the server changed: a clamped max_age, mx dropped
    )
    return policy, findings


def check_coverage(policy: Policy, mx_hosts: Sequence[str]) -> list[Finding]:
    """Every MX host must match a pattern (RFC 8461 §4.1); every pattern should match an MX."""
    if policy.mode is Mode.NONE:
        return []
    findings: list[Finding] = []
    missing = Status.ERROR if policy.mode is Mode.ENFORCE else Status.WARNING
    for host in mx_hosts:
        patterns = [p for p in policy.mx if mx_matches(p, host)]
        if patterns:
            findings.append(_cover(Status.OK, f"matched by mx: {patterns[0]}", host))
        else:
            message = (
                f"matches no mx pattern of the policy: MTA-STS senders will not deliver to it "
                f"(add 'mx: {host}')"
            )
            findings.append(_cover(missing, message, host))
    for pattern in policy.mx:
        if not any(mx_matches(pattern, host) for host in mx_hosts):
            findings.append(
                Finding(
                    Section.STS_POLICY, "mta-sts-policy.unused-pattern", Status.WARNING,
                    f"mx: {pattern} matches none of the MX hosts (a stale entry?)", pattern,
                )
            )  # fmt: skip
    return findings


def _days(seconds: int) -> str:
    days = seconds / ONE_DAY_S
    return f"{days:g} day" if days == 1 else f"{days:g} days"


def _split(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _line_notes(text: str, lines: list[str]) -> list[Finding]:
    """Warnings about lines the strict parser accepts but a publisher should fix."""
    notes: list[Finding] = []
    crlf = sum(1 for line in lines if line.endswith("\r"))
    if crlf and crlf != len(lines):
        notes.append(_lines(f"mixed line endings ({crlf} CRLF, {len(lines) - crlf} LF)"))
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        key, colon, _ = raw.rstrip("\r").partition(":")
        if not colon:
            continue
        if key.lower() in KNOWN_FIELDS and key not in KNOWN_FIELDS:
            notes.append(
                _lines(
                    f"line {number}: field {key!r} is not {key.lower()!r} (field names are "
                    "case-sensitive, so senders ignore it)"
                )
            )
        elif key in ("version", "mode", "max_age") and key in seen:
            notes.append(_lines(f"line {number}: second {key!r} field is ignored (the first wins)"))
        elif key not in KNOWN_FIELDS and key.strip() == key and key:
            notes.append(_lines(f"line {number}: unknown field {key!r} (senders ignore it)"))
        seen.add(key)
    return notes


def _hint(exc: PolicySyntaxError, lines: list[str]) -> str:
    if exc.line and exc.line <= len(lines):
        return f" ({lines[exc.line - 1].rstrip(chr(13))!r})"
    return ""


def _mode(policy: Policy) -> Finding:
    if policy.mode is Mode.ENFORCE:
        return Finding(Section.STS_POLICY, "mta-sts-policy.mode", Status.OK, "mode enforce")
    if policy.mode is Mode.TESTING:
        message = "mode testing: senders report failures but deliver anyway (switch to enforce)"
    else:
        message = "mode none: the policy is withdrawn, senders act as if there were no MTA-STS"
    return Finding(Section.STS_POLICY, "mta-sts-policy.mode", Status.WARNING, message)


def _grammar(status: Status, message: str, evidence: tuple[str, ...]) -> Finding:
    return Finding(Section.STS_POLICY, "mta-sts-policy.grammar", status, message, "", evidence)


def _lines(message: str) -> Finding:
    return Finding(Section.STS_POLICY, "mta-sts-policy.lines", Status.WARNING, message)


def _cover(status: Status, message: str, host: str) -> Finding:
    return Finding(Section.STS_POLICY, "mta-sts-policy.mx-coverage", status, message, host)
