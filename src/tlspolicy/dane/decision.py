"""The DANE verdict for a domain, from the DNS answers already gathered. Pure.

``lookup.py`` asks the questions; this module draws the conclusions, so every rule can be
tested with plain values. The rules (RFC 7672; postfix-tlspol ``getDanePolicy`` as the
reference, docs/protocol-notes.md §7.1):

* MX: null MX → none; NXDOMAIN → none; NODATA → implicit MX, the domain itself
  (RFC 5321 §5.1; RFC 7672 §2.2.2), as secure as the NODATA proof. MX targets that are
  not host names (``*``, escaped octets) are skipped, as Postfix's ``dns_get_rr`` skips
  them (``DNS_INVAL``): no connection is ever made to them.
* ``dane-only`` when the MX RRset is secure and every MX host has secure, usable TLSA.
* ``dane`` when at least one host has secure TLSA records (usable or not) but
  ``dane-only`` does not hold: Postfix then does the per-host work itself, and a secure
  TLSA RRset with only unusable records still obliges TLS (RFC 7672 §2.2). An insecure
  MX RRset whose hosts sit in signed zones lands here too (§2.2.1).
* Any failed address or TLSA lookup → ``temp`` for the whole domain, as postfix-tlspol
  does; answering ``dane`` or nothing could downgrade a host we could not check.
* TTL: the smallest TTL of the answers used, clamped; ``temp`` is never cached.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tlspolicy.config.defaults import DANE_MAX_TTL_S, DANE_MIN_TTL_S, DANE_NEGATIVE_TTL_S
from tlspolicy.dane.result import DaneLevel, DaneResult, HostResult
from tlspolicy.dane.tlsa import tlsa_usable
from tlspolicy.dnsstub.data import DnsAnswer, MxRecord, TlsaRecord
from tlspolicy.errors import DnsError
from tlspolicy.names import MAX_HOST_CHARS

# A host name as it can be queried: lowercase LDH labels (and "_") of 1..63 octets, at
# most 253 characters (RFC 1035 §2.3.4; RFC 952/1123 host names).
_HOSTNAME_LABEL_RE = re.compile(r"[a-z0-9_-]{1,63}")

# The free text of one Extended DNS Error item, "EDE 6 DNSSEC Bogus: <text>" as the DNS
# adapter writes it: kept in explanations, cut from TEMP reasons (they go to Postfix's log).
_EDE_TEXT_RE = re.compile(r"(EDE \d+[^:;]*): [^;]*")


@dataclass(frozen=True, slots=True)
class TtlLimits:
    """Cache lifetimes in seconds (defaults: ``tlspolicy.config.defaults``)."""

    min_ttl: int = DANE_MIN_TTL_S
    max_ttl: int = DANE_MAX_TTL_S
    negative_ttl: int = DANE_NEGATIVE_TTL_S  # for "none" verdicts whose answers had no TTL


@dataclass(frozen=True, slots=True)
class MxPlan:
    """Which hosts to examine, read from the MX answer.

    Attributes:
        hosts: MX hosts in preference order, deduplicated; empty when DANE cannot apply.
        secure: the MX RRset (or the NODATA proof behind an implicit MX) validated.
        ttl: TTL of the MX answer (its negative TTL for NODATA/NXDOMAIN).
        reason: why ``hosts`` is empty.
        implicit: the domain has no MX records and is its own mail host.
        skipped: MX targets that are not host names, left out of ``hosts``.
    """

    hosts: tuple[str, ...]
    secure: bool
    ttl: int
    reason: str = ""
    implicit: bool = False
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HostOutcome:
    """What the lookups found for one MX host, with the TTLs of the answers used.

    ``failure`` is non-empty when a lookup failed; it is the TEMP reason.
    """

    result: HostResult
    ttls: tuple[int, ...] = ()
    failure: str = ""

    @property
    def has_tlsa(self) -> bool:
        return self.result.tlsa_status == "secure" and (
            self.result.usable + self.result.unusable > 0
        )

    @property
    def usable(self) -> bool:
        return self.result.tlsa_status == "secure" and self.result.usable > 0


def plan_mx(domain: str, answer: DnsAnswer) -> MxPlan:
    """Turn the MX answer for ``domain`` into the list of hosts to examine."""
    if answer.rcode == "NXDOMAIN":
        return MxPlan((), answer.secure, answer.ttl, reason="domain does not exist (NXDOMAIN)")
    mx = sorted((r for r in answer.records if isinstance(r, MxRecord)), key=lambda r: r.preference)
    if not mx:
        # RFC 5321 §5.1: no MX RRs means the domain is its own (implicit) MX.
        return MxPlan((domain,), answer.secure, answer.ttl, implicit=True)
    if any(r.exchange == "" for r in mx):
        # RFC 7505 null MX; Postfix dns_get_rr returns DNS_NULLMX for any "." target,
        # delivery is never attempted and there must be no fallback to A/AAAA.
        return MxPlan((), answer.secure, answer.ttl, reason="null MX (domain accepts no mail)")
    names = tuple(dict.fromkeys(r.exchange for r in mx))
    valid = [is_hostname(h) for h in names]
    hosts = tuple(h for h, ok in zip(names, valid, strict=True) if ok)
    skipped = tuple(h for h, ok in zip(names, valid, strict=True) if not ok)
    reason = "" if hosts else "no MX target is a valid host name"
    return MxPlan(hosts, answer.secure, answer.ttl, reason=reason, skipped=skipped)


def is_hostname(name: str) -> bool:
    """Whether an MX target can be looked up and connected to (Postfix ``valid_hostname``)."""
    return 0 < len(name) <= MAX_HOST_CHARS and all(
        _HOSTNAME_LABEL_RE.fullmatch(label) for label in name.split(".")
    )


def count_tlsa(records: Sequence[TlsaRecord]) -> tuple[int, int, str]:
    """Usable and unusable record counts, and why the first unusable one is unusable."""
    usable = unusable = 0
    why = ""
    for record in records:
        ok, reason = tlsa_usable(record)
        if ok:
            usable += 1
        else:
            unusable += 1
            why = why or f"{record.usage} {record.selector} {record.mtype}: {reason}"
    return usable, unusable, why


def describe_error(err: DnsError, *, brief: bool = True) -> str:
    """``servfail (EDE 6 DNSSEC Bogus)`` style text.

    ``brief`` (for TEMP reasons, which Postfix logs) drops the resolver's free text after
    each EDE code; explanations pass ``brief=False`` to keep it.
    """
    detail = _EDE_TEXT_RE.sub(r"\1", err.detail) if brief else err.detail
    return f"{err.kind} ({detail})" if detail else err.kind


def temp_result(reason: str, *, mx_secure: bool | None = None) -> DaneResult:
    """A verdict that defers delivery; never cached (ttl 0)."""
    return DaneResult(level=DaneLevel.TEMP, reason=reason, ttl=0, mx_secure=mx_secure)


def decide(plan: MxPlan, hosts: Sequence[HostOutcome], limits: TtlLimits) -> DaneResult:
    """The verdict for a domain from its MX plan and the outcome for each host."""
    results = tuple(h.result for h in hosts) + tuple(
        HostResult(name, "invalid", detail="not a host name: skipped") for name in plan.skipped
    )
    if not plan.hosts:
        return DaneResult(
            level=DaneLevel.NONE,
            reason=plan.reason,
            ttl=_ttl(DaneLevel.NONE, [plan.ttl], limits),
            mx_secure=plan.secure,
            hosts=results,
        )
    for outcome in hosts:
        if outcome.failure:
            return DaneResult(
                level=DaneLevel.TEMP,
                reason=outcome.failure,
                ttl=0,
                mx_secure=plan.secure,
                hosts=results,
            )
    ttls = [plan.ttl, *(t for h in hosts for t in h.ttls)]
    total = len(hosts)
    with_tlsa = sum(1 for h in hosts if h.has_tlsa)
    usable = sum(1 for h in hosts if h.usable)
    if plan.secure and total > 0 and usable == total:
        level = DaneLevel.DANE_ONLY
        reason = f"usable TLSA at all {total} MX hosts"
    elif with_tlsa > 0:
        level = DaneLevel.DANE
        reason = f"secure TLSA at {with_tlsa} of {total} MX hosts, {usable} usable"
    else:
        level = DaneLevel.NONE
        # A TLSA lookup was made: the host (or its secure alias, §2.2.2) is in a signed zone.
        signed = sum(1 for r in results if r.tlsa_name)
        reason = "no MX host has secure TLSA" if signed else "no MX host in a signed zone"
    if level is not DaneLevel.DANE_ONLY and not plan.secure:
        reason += "; MX RRset not signed"
    if plan.implicit:
        reason += " (implicit MX)"
    return DaneResult(
        level=level,
        reason=reason,
        ttl=_ttl(level, ttls, limits),
        mx_secure=plan.secure,
        hosts=results,
    )


def _ttl(level: DaneLevel, ttls: Sequence[int], limits: TtlLimits) -> int:
    """Smallest TTL used, clamped; ``negative_ttl`` only when no TTL is known at all.

    A TTL of 0 is a real value (a resolver's cached record counted down to 0), so it is
    clamped up to ``min_ttl`` like any other, never stretched to ``negative_ttl``.
    """
    if not ttls:
        return limits.negative_ttl if level is DaneLevel.NONE else limits.min_ttl
    return max(limits.min_ttl, min(limits.max_ttl, *ttls))
