"""A response read by ``dnscodec`` as a ``DnsAnswer``, or the ``DnsError`` it means. No I/O.

The rules (RFC 7672 §2.1, RFC 2308 §5, RFC 8914) are in ``dnsstub/client.py``'s docstring:
the rcode decides failure, the AD flag the DNSSEC status, the CNAME chain is followed at
most ``MAX_CNAME_HOPS`` within the answer, and a negative answer lives for the SOA's
negative TTL.
"""

from __future__ import annotations

from tlspolicy.dnsstub import codec as dnscodec
from tlspolicy.dnsstub.codec import Response
from tlspolicy.dnsstub.data import DnsAnswer, MxRecord, Record, TlsaRecord, TxtRecord
from tlspolicy.errors import DnsError

# Longest CNAME chain followed, in hops: postfix-tlspol's DANE_CNAME_MAX_DEPTH
# (docs/protocol-notes.md §7.1); Postfix gives up after 10 queries along a chain (§5.3).
MAX_CNAME_HOPS = 8

# Longest Extended DNS Error text kept, in characters: it ends up in Postfix's log via
# the TEMP reply, and the resolver may put a whole validation chain in it (RFC 8914 §2).
MAX_EDE_TEXT_CHARS = 200

# TTL in seconds of the NXDOMAIN given for a name too long to exist. The answer never
# changes, so it must not shorten cache lifetimes: one day, the default ``dane.max_ttl``.
NONEXISTENT_NAME_TTL_S = 86400

# Extended DNS Error info-codes (RFC 8914 §5.2 and the IANA registry since), by name.
EDE_NAMES = (
    "Other", "Unsupported DNSKEY Algorithm", "Unsupported DS Digest Type", "Stale Answer",
    "Forged Answer", "DNSSEC Indeterminate", "DNSSEC Bogus", "Signature Expired",
    "Signature Not Yet Valid", "DNSKEY Missing", "RRSIGs Missing", "No Zone Key Bit Set",
    "NSEC Missing", "Cached Error", "Not Ready", "Blocked", "Censored", "Filtered",
    "Prohibited", "Stale NXDOMAIN Answer", "Not Authoritative", "Not Supported",
    "No Reachable Authority", "Network Error", "Invalid Data",
    "Signature Expired before Valid", "Too Early", "Unsupported NSEC3 Iterations Value",
    "Unable to conform to policy", "Synthesized", "Invalid Query Type", "Rate Limited",
    "Over Quota",
)  # fmt: skip

NOERROR, SERVFAIL, NXDOMAIN, REFUSED = 0, 2, 3, 5
RCODE_NAMES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADVERS",
}  # fmt: skip


def check_rcode(response: Response, host: str, port: int) -> None:
    rcode = response.rcode
    if rcode in (NOERROR, NXDOMAIN):
        return
    if rcode == SERVFAIL:
        raise DnsError("servfail", _ede_text(response))
    if rcode == REFUSED:
        raise DnsError("refused", f"by {host}:{port}")
    raise DnsError("other", f"rcode {RCODE_NAMES.get(rcode, rcode)} from {host}:{port}")


def _ede_text(response: Response) -> str:
    """The Extended DNS Errors (RFC 8914) of a response, e.g. ``EDE 6 DNSSEC Bogus: ...``."""
    parts = []
    for code, extra in response.ede:
        label = EDE_NAMES[code] if code < len(EDE_NAMES) else ""
        text = f"EDE {code} {label}".strip()
        if extra:
            # ";" separates EDE items; keep it out of the free text so each item stays whole.
            text += ": " + _printable(extra).replace(";", ",")[:MAX_EDE_TEXT_CHARS]
        parts.append(text)
    return "; ".join(parts)


def _printable(text: str) -> str:
    """Network text headed for a log line: control characters become ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text)


def to_answer(response: Response, qname_text: str, rdtype: str) -> DnsAnswer:
    rcode = "NXDOMAIN" if response.rcode == NXDOMAIN else "NOERROR"
    secure = bool(response.flags & dnscodec.AD)
    rrsets = response.answer
    wanted = dnscodec.QTYPES[rdtype]
    cnames: list[tuple[str, str]] = []
    ttls: list[int] = []
    current = qname_text
    seen = {current}
    final: dnscodec.RRset | None = None
    while True:
        final = rrsets.get((current, wanted))
        if final is not None:
            break
        alias = rrsets.get((current, dnscodec.CNAME))
        if alias is None or rdtype == "CNAME":
            break
        target = _cname_target(alias)
        ttls.append(alias.ttl)
        cnames.append((current, target))
        if len(cnames) > MAX_CNAME_HOPS:
            raise DnsError("malformed", f"CNAME chain longer than {MAX_CNAME_HOPS}")
        if target in seen:
            raise DnsError("malformed", f"CNAME loop at {target}")
        seen.add(target)
        current = target
    records: tuple[Record, ...] = ()
    if final is not None and rdtype == "CNAME":
        # A CNAME query is answered by the chain itself: one hop, no records.
        ttls.append(final.ttl)
        target = _cname_target(final)
        cnames.append((current, target))
        current = target
    elif final is not None:
        ttls.append(final.ttl)
        records = tuple(item for item in final.items if not isinstance(item, str))
    else:
        ttls.append(response.soa_ttl or 0)
    return DnsAnswer(
        qname=qname_text,
        rdtype=rdtype,
        rcode=rcode,
        secure=secure,
        cnames=tuple(cnames),
        canonical_name=current,
        records=records,
        ttl=min(ttls),
    )


def nonexistent(qname_text: str, rdtype: str) -> DnsAnswer:
    """The certain denial for a name that cannot exist (see the module docstring).

    ``secure`` is set: no zone can hold the name, which is as certain as a validated
    NXDOMAIN, and a DANE caller must read it as "no TLSA records", not as a failure.
    """
    return DnsAnswer(
        qname=qname_text,
        rdtype=rdtype,
        rcode="NXDOMAIN",
        secure=True,
        cnames=(),
        canonical_name=qname_text,
        records=(),
        ttl=NONEXISTENT_NAME_TTL_S,
    )


def _cname_target(rrset: dnscodec.RRset) -> str:
    target = next(iter(rrset.items))
    if not isinstance(target, str):  # cannot happen: dnscodec reads CNAME data as text
        raise DnsError("malformed", "CNAME RRset without a CNAME record")
    return target


def presentation(answer: DnsAnswer) -> list[str]:
    data = [f"{owner} CNAME {target}" for owner, target in answer.cnames]
    if not answer.records:
        return [*data, "NODATA" if answer.rcode == "NOERROR" else answer.rcode]
    for record in answer.records:
        if isinstance(record, MxRecord):
            data.append(f"{record.preference} {record.exchange or '.'}")
        elif isinstance(record, TlsaRecord):
            data.append(record.presentation())
        elif isinstance(record, TxtRecord):
            data.append(" ".join(repr(s)[1:] for s in record.strings))
        else:
            data.append(record.address)
    return data
