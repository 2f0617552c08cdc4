"""Findings for each MX address from its STARTTLS probe: reachability, TLS, PKIX, expiry. Pure.

Rules kept here:
* Every address is judged on its own (IPv4 and IPv6 separately): senders pick any of them.
* No connection, no STARTTLS, or a failed handshake is an error: MTA-STS and DANE senders
  will not deliver there, and others fall back to cleartext.
* The chain and the name (PKIX, as MTA-STS requires, RFC 8461 §4.2) are errors when an
  MTA-STS ``enforce`` policy applies and warnings otherwise (DANE-EE and opportunistic
  senders do not check them, RFC 7672 §3.1.1).
* Expiry: an error once expired or not yet valid, a warning within ``EXPIRY_WARNING_DAYS``.
* An address with nothing wrong gets one summary line.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from tlspolicy.check.certs import (
    EXPIRY_WARNING_DAYS,
    cert_info,
    days_left,
    name_matches,
)
from tlspolicy.check.findings import Finding, Section, Status
from tlspolicy.check.session import ProbeResult, Stage

MODERN_TLS = frozenset({"TLSv1.2", "TLSv1.3"})


def check_probe(
    result: ProbeResult,
    *,
    now: datetime.datetime,
    pkix_status: Status,
    trust_source: str,
) -> tuple[list[Finding], dict[str, Any] | None]:
    """Judge one probe.

    Args:
        result: what the probe saw.
        now: the time to judge validity at.
        pkix_status: the status of a PKIX failure (error under MTA-STS enforce).
        trust_source: "system store" or the CA file, for the message.

    Returns:
        (findings, certificate facts for ``--json`` / perfdata, or None without TLS).
    """
    subject = result.label
    evidence = [f"{result.family}, port {result.port}, {result.elapsed_ms} ms"]
    if result.banner:
        evidence.append(f"banner: {result.banner}")
    if result.stage is not Stage.DONE or result.tls is None:
        return [_fail(result, subject, tuple(evidence))], None
    tls = result.tls
    infos = [cert_info(der) for der in tls.chain]
    for index, info in enumerate(infos):
        evidence.append(f"cert {index}: {info.describe() if info else 'unparsable'}")
    evidence.append(f"{tls.version} {tls.cipher}")
    ev = tuple(evidence)
    leaf = infos[0] if infos else None
    problems: list[Finding] = []
    if tls.version not in MODERN_TLS:
        problems.append(
            _f("smtp.protocol", Status.WARNING, f"{tls.version}: use TLS 1.2 or later", subject, ev)
        )
    if tls.verify_error and not _about_validity(tls.verify_error):
        message = f"certificate chain not trusted ({trust_source}): {tls.verify_error}"
        problems.append(_f("smtp.chain", pkix_status, message, subject, ev))
    facts: dict[str, Any] | None = None
    if leaf is None:
        problems.append(
            _f("smtp.certificate", Status.ERROR, "no parsable certificate", subject, ev)
        )
    else:
        if not name_matches(leaf.names, result.host):
            names = ", ".join(leaf.names) or "no names"
            message = f"certificate is for {names}, not {result.host}"
            problems.append(_f("smtp.name", pkix_status, message, subject, ev))
        days = days_left(leaf, now)
        facts = {
            "host": result.host,
            "address": result.address,
            "days_left": days,
            "not_after": leaf.not_after.isoformat(),
        }
        expiry = _expiry(leaf.not_before, leaf.not_after, days, now)
        if expiry is not None:
            problems.append(_f("smtp.expiry", expiry[0], expiry[1], subject, ev))
    if problems:
        return problems, facts
    days_text = f", expires in {facts['days_left']} days" if facts else ""
    message = f"STARTTLS {tls.version}, trusted certificate for {result.host}{days_text}"
    return [_f("smtp.starttls", Status.OK, message, subject, ev)], facts


def check_not_probed(host: str, families: Sequence[str], why: str) -> Finding:
    """A host that was not probed (``--no-smtp``, no address of the chosen family)."""
    scope = "/".join(families)
    return Finding(Section.SMTP, "smtp.starttls", Status.SKIPPED, f"{why} ({scope})", host)


def _expiry(
    not_before: datetime.datetime, not_after: datetime.datetime, days: int, now: datetime.datetime
) -> tuple[Status, str] | None:
    if now < not_before:
        return Status.ERROR, f"certificate is not valid before {not_before:%Y-%m-%d %H:%M} UTC"
    if now >= not_after:
        ago = f"{-days} day{'' if days == -1 else 's'} ago"
        return Status.ERROR, f"certificate expired on {not_after:%Y-%m-%d} ({ago})"
    if days < EXPIRY_WARNING_DAYS:
        return (
            Status.WARNING,
            f"certificate expires in {days} days ({not_after:%Y-%m-%d}): renew it now",
        )
    return None


def _about_validity(verify_error: str) -> bool:
    """OpenSSL stops at an expired leaf; the expiry check below says it in days."""
    return "expired" in verify_error or "not yet valid" in verify_error


def _fail(result: ProbeResult, subject: str, evidence: tuple[str, ...]) -> Finding:
    if result.stage is Stage.CONNECT:
        message = f"cannot connect to port {result.port}: {result.error}"
        if result.error.startswith("no answer"):
            message += " (if this machine cannot reach port 25 at all, use --no-smtp)"
        check = "smtp.connect"
    elif result.stage is Stage.STARTTLS and not result.starttls:
        message = "STARTTLS is not offered: MTA-STS and DANE senders will not deliver here"
        check = "smtp.starttls"
    elif result.stage is Stage.HANDSHAKE:
        message = f"TLS handshake failed: {result.error}"
        check = "smtp.handshake"
    else:
        message = f"SMTP dialogue failed at {result.stage.value}: {result.error}"
        check = "smtp.dialogue"
    return _f(check, Status.ERROR, message, subject, evidence)


def _f(
    check: str, status: Status, message: str, subject: str, evidence: tuple[str, ...]
) -> Finding:
    return Finding(Section.SMTP, check, status, message, subject, evidence)
