"""The lab's DNS data: a set of zones, their records, and DNSSEC signing with dnspython.

What this module owns:
* Which zone a name belongs to (the deepest lab zone that contains it), the SOA/NS/glue each zone
  needs, and the delegation records (NS, glue, DS) each child zone gets in its parent.
* Per-run ECDSAP256SHA256 keys (one combined KSK/ZSK per signed zone, RFC 8624 §3.1), NSEC
  signing via ``dns.dnssec.sign_zone`` and the trust anchor (DS of the first zone) for Unbound.
* Deliberate breakage: a zone's RRSIGs over chosen types (or all) are corrupted, so a validating
  resolver answers SERVFAIL for them; ``corrupt_rrset`` does the same for one RRset at runtime.

Record values are zone-file presentation strings; names inside values are absolute whether or
not they end in a dot (``"10 mx1.dane-only.lab"``). TXT values need their quotes. No I/O here:
``render`` returns zone-file text and the caller writes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.dnssec
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.DS
import dns.rrset
import dns.transaction
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec
from dns.dnssectypes import Algorithm

ALL_TYPES = "*"  # in ZoneSpec.corrupt: every RRSIG of the zone is corrupted
DEFAULT_TTL_S = 300
SOA_TTL_S = 60  # also the negative TTL (RFC 2308 §5) and NSEC TTL (dnspython uses SOA minimum)
NS_ADDRESS = "127.0.0.1"  # glue for every lab zone; Unbound reaches NSD through stub-zones anyway
SIG_INCEPTION_SLACK_S = 3600  # RRSIG inception this far in the past, for clock skew
SIG_LIFETIME_S = 30 * 86400  # RRSIG expiration after inception
DNSKEY_FLAGS = 257  # ZONE + SEP: one combined signing key per zone (RFC 4034 §2.1.1)
ALGORITHM = Algorithm.ECDSAP256SHA256


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    """One authoritative zone of the lab.

    ``ds_in_parent`` false delegates the zone without DS (an insecure island even if signed).
    ``corrupt`` names the RR types whose RRSIGs are broken (``ALL_TYPES`` for all of them).
    """

    origin: str
    signed: bool = True
    ds_in_parent: bool = True
    corrupt: frozenset[str] = frozenset()


def absolute(name: str | dns.name.Name) -> dns.name.Name:
    """``"a.lab"`` and ``"a.lab."`` both mean the absolute name ``a.lab.``."""
    if isinstance(name, dns.name.Name):
        return name if name.is_absolute() else name.concatenate(dns.name.root)
    return dns.name.from_text(name, origin=dns.name.root)


def parse_rdata(rdtype: dns.rdatatype.RdataType, value: str) -> dns.rdata.Rdata:
    """Presentation text to rdata; RFC 3597 ``\\# LEN HEX`` is kept as raw wire data.

    dnspython checks some types (TLSA lengths per matching type) even in generic syntax, so
    deliberately malformed records are built as ``GenericRdata`` without that check.
    """
    parts = value.split()
    if parts and parts[0] == "\\#":
        data = bytes.fromhex("".join(parts[2:]))
        if len(parts) < 2 or int(parts[1]) != len(data):
            raise ValueError(f"generic rdata length does not match its data: {value!r}")
        return dns.rdata.GenericRdata(dns.rdataclass.IN, rdtype, data)
    return dns.rdata.from_text(
        dns.rdataclass.IN, rdtype, value, origin=dns.name.root, relativize=False
    )


def tlsa_value(usage: int, selector: int, mtype: int, data: bytes) -> str:
    """TLSA presentation text; generic syntax when dnspython would refuse the length."""
    text = f"{usage} {selector} {mtype} {data.hex()}"
    try:
        dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TLSA, text)
    except dns.exception.SyntaxError:
        wire = bytes((usage, selector, mtype)) + data
        return f"\\# {len(wire)} {wire.hex()}"
    return text


def _flip(signature: bytes) -> bytes:
    return bytes(b ^ 0x5A for b in signature)


class ZoneSet:
    """All lab zones and their records; remembers which zones changed since ``take_dirty``."""

    def __init__(self, specs: Sequence[ZoneSpec], *, serial: int) -> None:
        if not specs:
            raise ValueError("at least one zone is needed")
        self.specs = {absolute(s.origin): s for s in specs}
        self.root = absolute(specs[0].origin)
        for origin in self.specs:
            if not origin.is_subdomain(self.root):
                raise ValueError(f"{origin} is not inside {self.root}")
        self.serials = dict.fromkeys(self.specs, serial)
        self.keys: dict[dns.name.Name, tuple[ec.EllipticCurvePrivateKey, dns.rdata.Rdata]] = {}
        for origin, spec in self.specs.items():
            if spec.signed:
                private = ec.generate_private_key(ec.SECP256R1())
                dnskey = dns.dnssec.make_dnskey(private.public_key(), ALGORITHM, DNSKEY_FLAGS)
                self.keys[origin] = (private, dnskey)
        self.records: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], dns.rdataset.Rdataset]
        self.records = {}
        self.corrupted: set[tuple[dns.name.Name, dns.rdatatype.RdataType]] = set()
        self.dirty: set[dns.name.Name] = set(self.specs)

    # --- data --------------------------------------------------------------------------

    def zone_of(self, name: str | dns.name.Name) -> dns.name.Name:
        """The deepest lab zone containing ``name``; ValueError for names outside the lab."""
        owner = absolute(name)
        best: dns.name.Name | None = None
        for origin in self.specs:
            if owner.is_subdomain(origin) and (best is None or len(origin) > len(best)):
                best = origin
        if best is None:
            raise ValueError(f"{owner} is not inside any lab zone")
        return best

    def put(
        self, name: str, rdtype: str, values: Iterable[str], *, ttl: int = DEFAULT_TTL_S
    ) -> None:
        """Replace the RRset ``name``/``rdtype``; an empty ``values`` deletes it."""
        owner, kind = absolute(name), dns.rdatatype.from_text(rdtype)
        rdatas = [parse_rdata(kind, value) for value in values]
        self.dirty.add(self.zone_of(owner))
        if not rdatas:
            self.records.pop((owner, kind), None)
            return
        self.records[(owner, kind)] = dns.rdataset.from_rdata_list(ttl, rdatas)

    def delete(self, name: str, rdtype: str | None = None) -> None:
        """Remove one RRset, or every RRset at ``name`` when ``rdtype`` is None."""
        owner = absolute(name)
        kinds = [k for (n, k) in self.records if n == owner]
        if rdtype is not None:
            kinds = [dns.rdatatype.from_text(rdtype)]
        for kind in kinds:
            self.records.pop((owner, kind), None)
        self.dirty.add(self.zone_of(owner))

    def get(self, name: str, rdtype: str) -> tuple[int, list[str]] | None:
        """``(ttl, values)`` of an RRset stored with ``put``, or None."""
        found = self.records.get((absolute(name), dns.rdatatype.from_text(rdtype)))
        if found is None:
            return None
        return found.ttl, [r.to_text() for r in found]

    def corrupt_rrset(self, name: str, rdtype: str, *, on: bool = True) -> None:
        """Break (or repair) the RRSIG over one RRset in a signed zone."""
        key = (absolute(name), dns.rdatatype.from_text(rdtype))
        if on:
            self.corrupted.add(key)
        else:
            self.corrupted.discard(key)
        self.dirty.add(self.zone_of(key[0]))

    def take_dirty(self) -> set[dns.name.Name]:
        """Zones changed since the last call; each gets a new SOA serial."""
        dirty, self.dirty = self.dirty, set()
        for origin in dirty:
            self.serials[origin] += 1
        return dirty

    # --- rendering ---------------------------------------------------------------------

    def ds(self, origin: dns.name.Name) -> dns.rdata.Rdata:
        """The SHA-256 DS of a signed zone's key (RFC 4509)."""
        _, dnskey = self.keys[origin]
        assert isinstance(dnskey, dns.rdtypes.ANY.DNSKEY.DNSKEY)
        return dns.dnssec.make_ds(origin, dnskey, "SHA256")

    def trust_anchor(self) -> str:
        """The root zone's DS as a zone-file line, for Unbound's ``trust-anchor-file``."""
        return f"{self.root.to_text()} {SOA_TTL_S} IN DS {self.ds(self.root).to_text()}\n"

    def children(self, origin: dns.name.Name) -> list[dns.name.Name]:
        """Zones whose closest enclosing lab zone is ``origin``: they get NS, glue and DS there."""
        return [
            child
            for child in self.specs
            if child != self.root and self.zone_of(child.parent()) == origin
        ]

    def build(self, origin: dns.name.Name, *, now: float) -> dns.zone.Zone:
        """The zone ``origin`` with SOA, NS, delegations and records, signed if its spec says so."""
        spec = self.specs[origin]
        zone = dns.zone.Zone(origin, relativize=False)
        with zone.writer() as txn:
            self._add(txn, origin, "SOA", SOA_TTL_S, self._soa(origin))
            self._add(txn, origin, "NS", SOA_TTL_S, f"ns.{origin}")
            self._add(txn, absolute(f"ns.{origin}"), "A", SOA_TTL_S, NS_ADDRESS)
            for child in self.children(origin):
                self._add(txn, child, "NS", SOA_TTL_S, f"ns.{child}")
                self._add(txn, absolute(f"ns.{child}"), "A", SOA_TTL_S, NS_ADDRESS)
                child_spec = self.specs[child]
                if child_spec.signed and child_spec.ds_in_parent:
                    txn.add(child, SOA_TTL_S, self.ds(child))
            for (owner, _kind), rdataset in sorted(self.records.items()):
                if self.zone_of(owner) == origin:
                    txn.add(owner, rdataset)
        if spec.signed:
            self._sign(zone, spec, now=now)
        return zone

    def render(self, origin: dns.name.Name, *, now: float) -> str:
        """Zone-file text of ``build``, all names absolute."""
        return self.build(origin, now=now).to_text(relativize=False)

    def _soa(self, origin: dns.name.Name) -> str:
        return f"ns.{origin} hostmaster.{origin} {self.serials[origin]} 3600 600 86400 {SOA_TTL_S}"

    @staticmethod
    def _add(
        txn: dns.transaction.Transaction, owner: dns.name.Name, kind: str, ttl: int, text: str
    ) -> None:
        txn.add(owner, ttl, parse_rdata(dns.rdatatype.from_text(kind), text))

    def _sign(self, zone: dns.zone.Zone, spec: ZoneSpec, *, now: float) -> None:
        origin = absolute(spec.origin)
        private, dnskey = self.keys[origin]
        assert isinstance(dnskey, dns.rdtypes.ANY.DNSKEY.DNSKEY)
        inception = int(now) - SIG_INCEPTION_SLACK_S
        broken = {dns.rdatatype.from_text(t) for t in spec.corrupt if t != ALL_TYPES}

        def signer(txn: dns.transaction.Transaction, rrset: dns.rrset.RRset) -> None:
            rrsig = dns.dnssec.sign(
                rrset,
                private,
                origin,
                dnskey,
                inception=inception,
                expiration=inception + SIG_LIFETIME_S,
                origin=origin,
            )
            signed: dns.rdata.Rdata = rrsig
            if (
                ALL_TYPES in spec.corrupt
                or rrset.rdtype in broken
                or (rrset.name, rrset.rdtype) in self.corrupted
            ):
                signed = rrsig.replace(signature=_flip(rrsig.signature))
            txn.add(rrset.name, rrset.ttl, signed)

        dns.dnssec.sign_zone(zone, keys=[(private, dnskey)], rrset_signer=signer)
