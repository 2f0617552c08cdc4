"""DANE discovery for a destination domain (RFC 7672 §2.2): the DNS questions, in order.

The conclusions are drawn in ``decision.py``; this module only decides what to ask next:

1. MX for the domain (the adapter follows CNAMEs). Failure → ``temp``.
2. Hosts at or below an insecure MX owner name are in an unsigned zone: not asked about
   (``_in_unsigned_zone``). For each other MX host, ``concurrency`` at a time: A, then
   AAAA only when A is NODATA. Only a secure, non-empty address answer leads to a TLSA
   lookup (§2.2.2: "If the first address response is insecure, the client SHOULD NOT
   look up TLSA"; Postfix ``tls_dane_resolve`` does the same).
3. TLSA at ``_25._tcp.<base>``. When the secure address answer came through a CNAME
   chain, the fully expanded name is tried first and the initial name only after a
   secure "no TLSA" at the expanded one (§2.2.2); an error on the first try is final,
   as in Postfix ``tls_dane_resolve``.
4. An insecure address answer through a CNAME chain: a ``CNAME`` query for the MX host
   tells whether the first alias itself is secure; if so, TLSA at the initial name only
   (§2.2.2 "insecure CNAME"; Postfix ``qname_secure``). Otherwise no TLSA lookup.

``lookup_dane`` never raises for DNS trouble: a failed lookup becomes a ``temp`` verdict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tlspolicy.config.defaults import (
    DANE_MAX_TTL_S,
    DANE_MIN_TTL_S,
    DANE_NEGATIVE_TTL_S,
    DNS_CONCURRENCY,
)
from tlspolicy.dane.decision import (
    HostOutcome,
    TtlLimits,
    count_tlsa,
    decide,
    describe_error,
    plan_mx,
    temp_result,
)
from tlspolicy.dane.result import DaneResult, HostResult
from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.dnsstub.data import DnsAnswer, TlsaRecord
from tlspolicy.dnsstub.trace import note
from tlspolicy.errors import DnsError

# SMTP port for the TLSA owner name (RFC 7672 §2.2.3: _25._tcp.<base>).
SMTP_PORT = 25


async def lookup_dane(
    domain: str,
    dns: DnsClient,
    *,
    concurrency: int = DNS_CONCURRENCY,
    min_ttl: int = DANE_MIN_TTL_S,
    max_ttl: int = DANE_MAX_TTL_S,
    negative_ttl: int = DANE_NEGATIVE_TTL_S,
) -> DaneResult:
    """Decide ``dane-only``, ``dane``, ``none`` or ``temp`` for ``domain``.

    Args:
        domain: the next-hop domain, a lowercase A-label without trailing dot.
        dns: a validating ``DnsClient``.
        concurrency: MX hosts examined at once (at least 1).
        min_ttl, max_ttl: clamps for the verdict's cache lifetime, in seconds.
        negative_ttl: lifetime of a ``none`` verdict whose answers carried no TTL.

    Returns:
        A ``DaneResult``; ``level`` is ``TEMP`` (ttl 0) when a lookup failed.
    """
    limits = TtlLimits(min_ttl=min_ttl, max_ttl=max_ttl, negative_ttl=negative_ttl)
    try:
        mx_answer = await dns.query(domain, "MX")
    except DnsError as err:
        result = temp_result(f"MX lookup failed: {describe_error(err)}")
    else:
        plan = plan_mx(domain, mx_answer)
        gate = asyncio.Semaphore(max(1, concurrency))
        unsigned = _in_unsigned_zone(domain, mx_answer)
        outcomes = await asyncio.gather(
            *(
                _unsigned_host(host) if unsigned(host) else _examine_host(host, dns, gate)
                for host in plan.hosts
            )
        )
        result = decide(plan, outcomes, limits)
    note(f"DANE {domain}: {result.level.value}: {result.reason}")
    return result


def _in_unsigned_zone(domain: str, mx_answer: DnsAnswer) -> Callable[[str], bool]:
    """Which MX hosts certainly have no secure address: those at or below an insecure MX
    owner name (DNS economy: asking for their addresses cannot lead to a TLSA lookup).

    An insecure answer without CNAMEs means ``domain`` is in an unsigned zone (or below an
    insecure delegation), and every name below it is as insecure (RFC 4035 §4.3, §5.2): a
    validator cannot build a chain of trust through an unsigned parent. So such a host's
    address answer would be insecure and §2.2.2 forbids the TLSA lookup. Hosts elsewhere
    are still examined: a secure host of an insecure MX RRset gets DANE (``dane`` verdict,
    Postfix's "half-dane"). Not applied through a CNAME (the insecure link may lie after
    the domain's own zone). A trust anchor configured below an unsigned zone is the one
    case this misses; such a host is reported insecure.
    """
    if mx_answer.secure or mx_answer.cnames:
        return lambda host: False
    return lambda host: host == domain or host.endswith("." + domain)


async def _unsigned_host(host: str) -> HostOutcome:
    detail = "in the MX owner's unsigned zone: no address or TLSA lookup"
    return HostOutcome(HostResult(host, "insecure", detail=detail), ())


async def _examine_host(host: str, dns: DnsClient, gate: asyncio.Semaphore) -> HostOutcome:
    async with gate:
        ttls: list[int] = []
        try:
            address = await _lookup_address(host, dns, ttls)
        except DnsError as err:
            return HostOutcome(
                HostResult(host=host, address_status="error", detail=_explain(err)),
                tuple(ttls),
                failure=f"address lookup failed for {host}: {describe_error(err)}",
            )
        if not address.records:
            detail = f"no address ({'NODATA' if address.rcode == 'NOERROR' else address.rcode})"
            return HostOutcome(HostResult(host, "none", detail=detail), tuple(ttls))
        if address.secure:
            bases = [host]
            via = ""
            if address.cnames and address.canonical_name != host:
                bases.insert(0, address.canonical_name)  # §2.2.2: expanded name first
                via = f"via CNAME {address.canonical_name}; "
            return await _lookup_tlsa(
                host, dns, ttls, address_status="secure", bases=bases, via=via
            )
        if not address.cnames:
            detail = "address not DNSSEC-validated: no TLSA lookup"
            return HostOutcome(HostResult(host, "insecure", detail=detail), tuple(ttls))
        return await _insecure_alias(host, address, dns, ttls)


async def _insecure_alias(
    host: str, address: DnsAnswer, dns: DnsClient, ttls: list[int]
) -> HostOutcome:
    """An insecure address answer that came through a CNAME chain (RFC 7672 §2.2.2).

    When the first CNAME itself is secure and only a later link is not, the initial name
    is still the TLSA base domain. A ``CNAME`` query for the initial name tells, as
    Postfix's ``qname_secure`` does; an error, or no CNAME any more, is a lookup failure.
    """
    target = address.canonical_name
    try:
        alias = await dns.query(host, "CNAME")
    except DnsError as err:
        return HostOutcome(
            HostResult(host, "insecure", detail=f"CNAME status lookup: {_explain(err)}"),
            tuple(ttls),
            failure=f"CNAME status lookup failed for {host}: {describe_error(err)}",
        )
    ttls.append(alias.ttl)
    if not alias.cnames:
        return HostOutcome(
            HostResult(host, "insecure", detail="CNAME status lookup: no longer a CNAME"),
            tuple(ttls),
            failure=f"CNAME status lookup failed for {host}: no longer a CNAME",
        )
    if not alias.secure:
        detail = f"insecure CNAME to {target}: no TLSA lookup"
        return HostOutcome(HostResult(host, "insecure", detail=detail), tuple(ttls))
    via = f"secure CNAME to insecure {target}: TLSA at the initial name; "
    return await _lookup_tlsa(host, dns, ttls, address_status="insecure", bases=[host], via=via)


async def _lookup_address(host: str, dns: DnsClient, ttls: list[int]) -> DnsAnswer:
    answer = await dns.query(host, "A")
    ttls.append(answer.ttl)
    if answer.rcode == "NOERROR" and not answer.records:
        answer = await dns.query(host, "AAAA")
        ttls.append(answer.ttl)
    return answer


async def _lookup_tlsa(
    host: str,
    dns: DnsClient,
    ttls: list[int],
    *,
    address_status: str,
    bases: list[str],
    via: str,
) -> HostOutcome:
    """TLSA at ``_25._tcp.<base>`` for each base in turn, until one has records.

    Only a secure "no TLSA" moves on to the next base; an error is final (Postfix
    ``tls_dane_resolve``: "If the rname lookup fails we don't try the qname").
    """
    tlsa_name = ""
    rcode = ""
    for base in bases:
        tlsa_name = f"_{SMTP_PORT}._tcp.{base}"
        try:
            answer = await dns.query(tlsa_name, "TLSA")
        except DnsError as err:
            return HostOutcome(
                HostResult(host, address_status, tlsa_name, "error", detail=via + _explain(err)),
                tuple(ttls),
                failure=f"TLSA lookup failed for {host}: {describe_error(err)}",
            )
        ttls.append(answer.ttl)
        rcode = answer.rcode
        if not answer.secure:
            detail = f"{via}TLSA answer not DNSSEC-validated"
            return HostOutcome(
                HostResult(host, address_status, tlsa_name, "insecure", detail=detail),
                tuple(ttls),
            )
        records = [r for r in answer.records if isinstance(r, TlsaRecord)]
        if records:
            usable, unusable, why = count_tlsa(records)
            detail = via + (why if not usable else f"{usable} usable TLSA records")
            result = HostResult(host, address_status, tlsa_name, "secure", usable, unusable, detail)
            return HostOutcome(result, tuple(ttls))
    detail = f"{via}no TLSA records (validated {'NODATA' if rcode == 'NOERROR' else rcode})"
    return HostOutcome(
        HostResult(host, address_status, tlsa_name, "none", detail=detail), tuple(ttls)
    )


def _explain(err: DnsError) -> str:
    """The full error text, with the resolver's EDE explanation, for ``tlspolicy query``."""
    return describe_error(err, brief=False)
