"""A dnspython response as a ``DnsAnswer``, or the ``DnsError`` it means. No I/O.

The rules (RFC 7672 §2.1, RFC 2308 §5, RFC 8914) are in ``dnsclient``'s module docstring:
the rcode decides failure, the AD flag the DNSSEC status, the CNAME chain is followed at
most ``MAX_CNAME_HOPS`` within the answer, and a negative answer lives for the SOA's
negative TTL.
"""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rrset

from tlspolicy.dnsdata import AddressRecord, DnsAnswer, MxRecord, Record, TlsaRecord, TxtRecord
from tlspolicy.dnswire import tlsa_fields
from tlspolicy.errors import DnsError

# Longest CNAME chain followed, in hops; Postfix and postfix-tlspol use the same bound
# (peers.md Appendix A §1.2, DANE_CNAME_MAX_DEPTH).
MAX_CNAME_HOPS = 8

# Longest Extended DNS Error text kept, in characters: it ends up in Postfix's log via
# the TEMP reply, and the resolver may put a whole validation chain in it (RFC 8914 §2).
MAX_EDE_TEXT_CHARS = 200

# TTL in seconds of the NXDOMAIN given for a name too long to exist. The answer never
# changes, so it must not shorten cache lifetimes: one day, the default ``dane.max_ttl``.
NONEXISTENT_NAME_TTL_S = 86400


def check_rcode(response: dns.message.Message, host: str, port: int) -> None:
    rcode = response.rcode()
    if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return
    if rcode == dns.rcode.SERVFAIL:
        raise DnsError("servfail", _ede_text(response))
    if rcode == dns.rcode.REFUSED:
        raise DnsError("refused", f"by {host}:{port}")
    raise DnsError("other", f"rcode {dns.rcode.to_text(rcode)} from {host}:{port}")


def _ede_text(response: dns.message.Message) -> str:
    """The Extended DNS Errors (RFC 8914) of a response, e.g. ``EDE 6 DNSSEC Bogus: ...``."""
    parts = []
    for option in response.extended_errors():
        code = int(option.code)
        try:
            label = _ede_label(dns.edns.EDECode(code).name)
        except ValueError:
            label = ""
        text = f"EDE {code} {label}".strip()
        if option.text:
            # ";" separates EDE items; keep it out of the free text so each item stays whole.
            extra = _printable(option.text).replace(";", ",")
            text += ": " + extra[:MAX_EDE_TEXT_CHARS]
        parts.append(text)
    return "; ".join(parts)


def _ede_label(enum_name: str) -> str:
    keep = {"DNSSEC", "DNSKEY", "DS", "NSEC", "NSEC3", "NXDOMAIN", "RRSIGS"}
    return " ".join(w if w in keep else w.capitalize() for w in enum_name.split("_"))


def _printable(text: str) -> str:
    """Network text headed for a log line: control characters become ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text)


def to_answer(
    response: dns.message.Message, qname: dns.name.Name, qname_text: str, rdtype: str
) -> DnsAnswer:
    rcode = dns.rcode.to_text(response.rcode())
    secure = bool(response.flags & dns.flags.AD)
    rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    for rrset in response.answer:
        if rrset.rdclass == dns.rdataclass.IN:
            rrsets.setdefault((rrset.name, rrset.rdtype), rrset)
    wanted = dns.rdatatype.from_text(rdtype)
    cnames: list[tuple[str, str]] = []
    ttls: list[int] = []
    current = qname
    seen = {qname}
    final: dns.rrset.RRset | None = None
    while True:
        found = rrsets.get((current, wanted))
        if found is not None:
            final = found
            break
        alias = rrsets.get((current, dns.rdatatype.CNAME))
        if alias is None or rdtype == "CNAME":
            break
        target = _cname_target(alias)
        ttls.append(alias.ttl)
        cnames.append((_text(current), _text(target)))
        if len(cnames) > MAX_CNAME_HOPS:
            raise DnsError("malformed", f"CNAME chain longer than {MAX_CNAME_HOPS}")
        if target in seen:
            raise DnsError("malformed", f"CNAME loop at {_text(target)}")
        seen.add(target)
        current = target
    records: tuple[Record, ...] = ()
    if final is not None and rdtype == "CNAME":
        # A CNAME query is answered by the chain itself: one hop, no records.
        ttls.append(final.ttl)
        target = _cname_target(final)
        cnames.append((_text(current), _text(target)))
        current = target
    elif final is not None:
        ttls.append(final.ttl)
        records = tuple(_convert(rdata) for rdata in final)
    else:
        negative = _negative_ttl(response)
        ttls.append(negative)
    return DnsAnswer(
        qname=qname_text,
        rdtype=rdtype,
        rcode=rcode,
        secure=secure,
        cnames=tuple(cnames),
        canonical_name=_text(current),
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


def _cname_target(rrset: dns.rrset.RRset) -> dns.name.Name:
    rdata = rrset[0]
    if not isinstance(rdata, dns.rdtypes.ANY.CNAME.CNAME):
        raise DnsError("malformed", "CNAME RRset without a CNAME record")
    return rdata.target


def _negative_ttl(response: dns.message.Message) -> int:
    """RFC 2308 §5: min(SOA TTL, SOA MINIMUM) from the authority section; 0 without SOA."""
    for rrset in response.authority:
        soa = rrset[0] if rrset.rdtype == dns.rdatatype.SOA and len(rrset) else None
        if isinstance(soa, dns.rdtypes.ANY.SOA.SOA):
            return min(rrset.ttl, soa.minimum)
    return 0


def _convert(rdata: dns.rdata.Rdata) -> Record:
    if isinstance(rdata, dns.rdtypes.ANY.MX.MX):
        exchange = "" if rdata.exchange == dns.name.root else _text(rdata.exchange)
        return MxRecord(preference=rdata.preference, exchange=exchange)
    tlsa = tlsa_fields(rdata)
    if tlsa is not None:
        usage, selector, mtype, data = tlsa
        return TlsaRecord(usage=usage, selector=selector, mtype=mtype, data=bytes(data))
    if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
        return TxtRecord(strings=tuple(bytes(s) for s in rdata.strings))
    if isinstance(rdata, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
        return AddressRecord(address=str(rdata.address))
    raise DnsError("malformed", f"unexpected record type {dns.rdatatype.to_text(rdata.rdtype)}")


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


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
