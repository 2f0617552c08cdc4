"""DNS answers as plain values, with their DNSSEC status.

The DNS adapter (``client.py``) turns wire answers into these; the DANE and MTA-STS
logic reads only these. A negative answer (NXDOMAIN, NODATA) is an answer, not an error:
``DnsAnswer.records`` is empty and ``rcode`` tells which. Failures (SERVFAIL, bogus,
timeout, refused, malformed) never become a ``DnsAnswer``; the adapter raises ``DnsError``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MxRecord:
    preference: int
    exchange: str  # lowercase A-label, no trailing dot; "" for the null MX target "."


@dataclass(frozen=True, slots=True)
class TlsaRecord:
    usage: int
    selector: int
    mtype: int
    data: bytes

    def presentation(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


@dataclass(frozen=True, slots=True)
class TxtRecord:
    strings: tuple[bytes, ...]  # the character-strings of one TXT RR, in order


@dataclass(frozen=True, slots=True)
class AddressRecord:
    address: str  # textual IPv4 or IPv6 address


Record = MxRecord | TlsaRecord | TxtRecord | AddressRecord


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """The usable result of one query, after following the CNAME chain in the answer.

    Attributes:
        qname: the name asked (lowercase A-label, no trailing dot).
        rdtype: "A", "AAAA", "MX", "TXT", "TLSA" or "CNAME".
        rcode: "NOERROR" or "NXDOMAIN".
        secure: the resolver set the AD flag (the whole answer validated).
        cnames: the CNAME chain followed, as (owner, target) pairs, in order.
        canonical_name: the final name (``qname`` when there was no CNAME).
        records: the records of type ``rdtype`` at ``canonical_name``.
        ttl: smallest TTL of the RRsets used; for a negative answer the RFC 2308 negative
            TTL (min of SOA TTL and SOA MINIMUM), or 0 when no SOA came back.
    """

    qname: str
    rdtype: str
    rcode: str
    secure: bool
    cnames: tuple[tuple[str, str], ...]
    canonical_name: str
    records: tuple[Record, ...]
    ttl: int

    @property
    def is_negative(self) -> bool:
        return not self.records

    @property
    def status(self) -> str:
        return "secure" if self.secure else "insecure"
