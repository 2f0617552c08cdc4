"""DANE findings per MX host: the TLSA RRset, each record's usability, the match (RFC 7672). Pure.

The TLSA owner name, its DNSSEC status and the lookup outcome come from the server's own
DANE discovery (``dane.lookup.lookup_dane``: CNAME expansion, A before TLSA, insecure
addresses skipped); usability is ``dane.tlsa.tlsa_usable``; this module matches the usable
records against the chain the host presented (``certs.tlsa_match``) and says what a DANE
sender will do about it:
* usable records, none matching → error: every DANE sender defers mail to the host (§9.1);
* secure records, all unusable → warning: TLS without authentication (§2.2);
* a TLSA lookup error → error: DANE senders treat the host as unreachable (§2.1.2);
* a single TLSA record → warning: no rollover partner for the next key change.
"""

from __future__ import annotations

from collections.abc import Sequence

from tlspolicy.check.certs import tlsa_match
from tlspolicy.check.findings import Finding, Section, Status
from tlspolicy.dane.result import DaneLevel, DaneResult, HostResult
from tlspolicy.dane.tlsa import MTYPE_NAMES, SELECTOR_NAMES, USAGE_NAMES, tlsa_usable
from tlspolicy.dnsstub.data import TlsaRecord


def check_domain(result: DaneResult) -> Finding:
    """The domain-level DANE outcome, as the server's discovery decided it."""
    level = result.level
    if level is DaneLevel.DANE_ONLY:
        return _f(Status.OK, f"DANE for every MX host ({result.reason})", check="dane.domain")
    if level is DaneLevel.DANE:
        return _f(
            Status.WARNING, f"DANE for some MX hosts only: {result.reason}", check="dane.domain"
        )
    if level is DaneLevel.TEMP:
        return _f(
            Status.ERROR, f"DANE lookup failed, senders defer: {result.reason}", check="dane.domain"
        )
    return _f(Status.OK, f"DANE not used: {result.reason}", check="dane.domain")


def describe(record: TlsaRecord) -> str:
    data = record.data.hex()
    short = data if len(data) <= 24 else data[:24] + "…"
    names = (
        f"{USAGE_NAMES.get(record.usage, '?')} {SELECTOR_NAMES.get(record.selector, '?')} "
        f"{MTYPE_NAMES.get(record.mtype, '?')}"
    )
    return f"{record.usage} {record.selector} {record.mtype} {short} ({names})"


def check_host(
    host: HostResult, records: Sequence[TlsaRecord], chain: Sequence[bytes] | None
) -> list[Finding]:
    """Judge one MX host. ``chain``: what it presented (None: no TLS session to match)."""
    name = host.host
    status = host.tlsa_status
    if status == "error":
        return [
            _f(
                Status.ERROR,
                f"TLSA lookup failed: DANE senders treat {name} as unreachable ({host.detail})",
                name,
            )
        ]
    if status == "insecure":
        if records:
            return [
                _f(Status.WARNING, "TLSA records are not DNSSEC-signed: senders ignore them", name)
            ]
        return [_f(Status.OK, f"no DANE: {host.detail}", name)]
    if status != "secure":
        return [_f(Status.OK, f"no DANE: {host.detail or 'no TLSA records'}", name)]
    evidence: list[str] = [f"TLSA at {host.tlsa_name} (DNSSEC secure)"]
    usable: list[TlsaRecord] = []
    unusable: list[str] = []
    for record in records:
        ok, why = tlsa_usable(record)
        if ok:
            usable.append(record)
        else:
            unusable.append(f"{describe(record)}: {why}")
    findings: list[Finding] = []
    matched: list[str] = []
    if chain:
        for record in usable:
            hit, how = tlsa_match(record, chain, name)
            evidence.append(f"{describe(record)}: {how}")
            if hit:
                matched.append(describe(record))
    else:
        evidence += [f"{describe(r)}: usable" for r in usable]
    evidence += [f"{item}" for item in unusable]
    ev = tuple(evidence)
    if not usable:
        findings.append(
            _f(
                Status.WARNING,
                f"all {len(records)} TLSA records are unusable: "
                "DANE senders use TLS without authentication",
                name,
                ev,
            )
        )
    elif chain is None:
        findings.append(
            Finding(
                Section.DANE,
                "dane.match",
                Status.SKIPPED,
                f"{len(usable)} usable TLSA records, not matched (no TLS session)",
                name,
                ev,
            )
        )
    elif matched:
        findings.append(
            Finding(Section.DANE, "dane.match", Status.OK, f"TLSA {matched[0]} matches", name, ev)
        )
    else:
        findings.append(
            Finding(
                Section.DANE, "dane.match", Status.ERROR,
                "no TLSA record matches the certificate: mail to this host will be deferred "
                "by every DANE sender", name, ev,
            )
        )  # fmt: skip
    if usable and unusable:
        findings.append(
            _f(Status.WARNING, f"{len(unusable)} unusable TLSA records ({unusable[0]})", name, ev)
        )
    if len(records) == 1:
        findings.append(
            Finding(
                Section.DANE, "dane.rollover", Status.WARNING,
                "only one TLSA record: publish the next key's record too (or a 2 x x record "
                "for the issuing CA) so a certificate change does not break DANE", name, ev,
            )
        )  # fmt: skip
    return findings


def _f(
    status: Status,
    message: str,
    subject: str = "",
    evidence: tuple[str, ...] = (),
    *,
    check: str = "dane.tlsa",
) -> Finding:
    return Finding(Section.DANE, check, status, message, subject, evidence)
