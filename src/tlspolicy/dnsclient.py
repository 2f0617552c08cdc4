"""The dnspython adapter: asks the configured validating resolver and returns ``DnsAnswer``s.

This is the only module that talks DNS on the wire. It keeps these rules:

* Every query carries EDNS0 with the DO bit and RD set, so the resolver validates and
  reports the result in the AD flag (RFC 7672 §2.1.1; RFC 4035 §3.2.3). ``secure`` is the
  AD flag of the response; trusting it needs a trusted path to the resolver (loopback).
* UDP first, TCP when the response is truncated (``dns.asyncquery.udp_with_fallback``).
* One overall deadline of ``timeout`` seconds per call. Nameservers are tried in order;
  each gets an equal share of the time still left, so a dead first server costs at most
  ``timeout / len(nameservers)`` and a server that fails fast hands its share on.
* Only failures to get an answer move on to the next server: timeouts, network errors,
  malformed or mismatched packets (they say nothing about the name), and REFUSED (a
  server's access policy, RFC 1035 §4.1.1, not a verdict on the name). SERVFAIL ends the
  call: it is how a validating resolver reports DNSSEC bogus data (RFC 4035 §5.5), and
  asking another server would turn a validation failure into a fallback to whichever
  server validates least. Other rcodes (FORMERR, NOTIMP, ...) end it too: the server
  understood enough to answer. NOERROR and NXDOMAIN are answers. So every listed
  nameserver must validate. When every server fails, the most telling failure is raised
  (an rcode beats a malformed packet beats a network error beats a timeout).
* Third-party exceptions become ``DnsError`` here and nowhere else (``_exchange``).
* The CNAME chain in the answer section is followed from the query name (at most
  ``MAX_CNAME_HOPS``); a recursive resolver already chased it, so an empty target is a
  NODATA at the target and is not re-queried.
* A well-formed name that is too long for the wire (``_25._tcp.`` or ``_mta-sts.`` in front
  of a 253-character domain) cannot exist in any zone (RFC 1035 §3.1: 255 octets). It gets
  an NXDOMAIN answer without a query, as Postfix's ``dns_lookup_x`` gives NOTFOUND for names
  that fail ``valid_hostname``; raising instead would turn "no such record" into a
  permanent TEMP for an otherwise valid domain.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import Sequence
from typing import Protocol

import dns.asyncquery
import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TLSA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.tlsabase
import dns.rrset

from tlspolicy import trace
from tlspolicy.dnsdata import AddressRecord, DnsAnswer, MxRecord, Record, TlsaRecord, TxtRecord
from tlspolicy.errors import DnsError
from tlspolicy.trace import TraceEvent

# Record types the callers ask for; "CNAME" returns only the chain (``DnsAnswer.cnames``).
# dnspython rejects a whole response when a TLSA record's data length does not fit its
# matching type (``TLSABase._cert_length_by_mtype``). Such data is legal DNS that only makes
# that one record unusable (RFC 6698 §4.1 as used by RFC 7672 §2.2; Postfix's
# ``parse_tlsa_rr`` does the same), so the check is switched off and ``dane/tlsa.py`` judges
# the record. Without this, one malformed record would turn a DANE domain into TEMP forever.
dns.rdtypes.tlsabase.TLSABase._cert_length_by_mtype = {}


class DnsClient(Protocol):
    """Asks the configured (validating) resolver, with the DO bit set.

    ``query`` returns a ``DnsAnswer`` for NOERROR (with or without data) and NXDOMAIN,
    and raises ``tlspolicy.errors.DnsError`` for everything else. While a trace is being
    recorded (``trace.recording``), each query appends one ``TraceEvent``, also failures.
    """

    async def query(self, name: str, rdtype: str) -> DnsAnswer: ...

    async def aclose(self) -> None: ...


SUPPORTED_RDTYPES = frozenset({"A", "AAAA", "MX", "TXT", "TLSA", "CNAME"})

# Longest CNAME chain followed, in hops; Postfix and postfix-tlspol use the same bound
# (peers.md Appendix A §1.2, DANE_CNAME_MAX_DEPTH).
MAX_CNAME_HOPS = 8

# EDNS0 UDP payload size in bytes: the DNS Flag Day 2020 value, also postfix-tlspol's.
DEFAULT_UDP_SIZE = 1232

# Longest Extended DNS Error text kept, in characters: it ends up in Postfix's log via
# the TEMP reply, and the resolver may put a whole validation chain in it (RFC 8914 §2).
MAX_EDE_TEXT_CHARS = 200

# Presentation-format names (RFC 1035 §2.3.4): 253 characters, labels of 1..63 octets.
# With only plain characters (no escapes) 253 characters are 255 octets on the wire.
MAX_NAME_CHARS = 253
_LABEL_RE = re.compile(r"[a-z0-9_-]{1,63}")

# TTL in seconds of the NXDOMAIN given for a name too long to exist. The answer never
# changes, so it must not shorten cache lifetimes: one day, the default ``dane.max_ttl``.
NONEXISTENT_NAME_TTL_S = 86400

# Failure kinds after which the next nameserver is asked (see the module docstring).
_NEXT_SERVER_KINDS = frozenset({"timeout", "network", "malformed", "refused"})

# Rank of failure kinds when every server failed: the most telling one is raised.
_ERROR_RANK = {"servfail": 6, "refused": 5, "other": 4, "malformed": 3, "network": 2, "timeout": 1}

DEFAULT_NAMESERVERS = [("127.0.0.1", 53)]


class ResolverClient:
    """A ``DnsClient`` that sends DO-bit queries to a list of recursive resolvers.

    Sockets live for one exchange only, so ``aclose`` has nothing to release; it exists
    to satisfy the ``DnsClient`` protocol.
    """

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]],
        *,
        timeout: float,
        udp_size: int = DEFAULT_UDP_SIZE,
    ) -> None:
        if not nameservers:
            raise ValueError("at least one nameserver is required")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._nameservers = [
            (str(ipaddress.ip_address(host)), int(port)) for host, port in nameservers
        ]
        self._timeout = float(timeout)
        self._udp_size = int(udp_size)

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        """Ask for ``rdtype`` records at ``name``.

        Args:
            name: an A-label domain name without trailing dot (one trailing dot is tolerated).
            rdtype: one of ``SUPPORTED_RDTYPES``.

        Returns:
            A ``DnsAnswer`` for NOERROR (with or without data) and NXDOMAIN.

        Raises:
            DnsError: servfail, refused, other, timeout, malformed or network.
            ValueError: ``rdtype`` is not supported (a programming error).
        """
        if rdtype not in SUPPORTED_RDTYPES:
            raise ValueError(f"unsupported rdtype {rdtype!r}")
        started = time.monotonic()
        qname_text = name.lower().removesuffix(".")
        event = TraceEvent(kind="dns", name=qname_text, detail=rdtype)
        try:
            if well_formed_name(qname_text) and len(qname_text) > MAX_NAME_CHARS:
                answer = _nonexistent(qname_text, rdtype)
                event.data = ["NXDOMAIN (name longer than 255 octets, not sent)"]
            else:
                answer = await self._resolve(qname_text, rdtype)
                event.data = _presentation(answer)
        except DnsError as err:
            event.status = "error"
            event.data = [err.kind, err.detail] if err.detail else [err.kind]
            raise
        else:
            event.status, event.ttl = answer.status, answer.ttl
        finally:
            event.elapsed_ms = _elapsed_ms(started)
            if event.status:  # not when cancelled
                trace.record(event)
        return answer

    async def aclose(self) -> None:
        """Nothing to release: every exchange opens and closes its own socket."""

    async def _resolve(self, qname_text: str, rdtype: str) -> DnsAnswer:
        if not valid_name(qname_text):
            raise DnsError("malformed", "invalid domain name", name=qname_text, rdtype=rdtype)
        qname = dns.name.from_text(qname_text)
        query = dns.message.make_query(
            qname, rdtype, want_dnssec=True, use_edns=0, payload=self._udp_size
        )
        query.flags |= dns.flags.RD | dns.flags.AD
        response = await self._ask_servers(query, qname_text, rdtype)
        return _to_answer(response, qname, qname_text, rdtype)

    async def _ask_servers(
        self, query: dns.message.Message, qname_text: str, rdtype: str
    ) -> dns.message.Message:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        worst: DnsError | None = None
        count = len(self._nameservers)
        for index, (host, port) in enumerate(self._nameservers):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            share = remaining / (count - index)
            try:
                response = await _exchange(query, host, port, share)
                _check_rcode(response, host, port)
                return response
            except DnsError as err:
                if err.kind not in _NEXT_SERVER_KINDS:
                    raise DnsError(err.kind, err.detail, name=qname_text, rdtype=rdtype) from None
                if worst is None or _ERROR_RANK[err.kind] > _ERROR_RANK[worst.kind]:
                    worst = err
        if worst is None:
            worst = DnsError("timeout", f"no answer within {self._timeout:g} s")
        raise DnsError(worst.kind, worst.detail, name=qname_text, rdtype=rdtype)


async def _exchange(
    query: dns.message.Message, host: str, port: int, budget_s: float
) -> dns.message.Message:
    """One UDP(+TCP) exchange; the single place where dnspython exceptions are translated."""
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        async with asyncio.timeout(budget_s):
            # A stray or forged datagram (wrong ID, wrong source, garbage) is dropped and the
            # wait goes on: failing on the first one would let any packet defer the mail.
            # Long-lived sockets matched by query ID, TCP on truncation (dnstransport.py).
            from tlspolicy import dnstransport  # noqa: PLC0415 - TODO(lead): top-level import

            response = await dnstransport.exchange(query, host, port, budget_s)
    except (TimeoutError, dns.exception.Timeout):
        raise DnsError("timeout", f"no answer from {where} within {budget_s:.2f} s") from None
    except (dns.query.BadResponse, dns.query.UnexpectedSource) as err:
        raise DnsError("malformed", f"mismatched response from {where}: {err}") from err
    except (dns.exception.DNSException, ValueError) as err:
        raise DnsError("malformed", f"unparsable response from {where}: {err}") from err
    except EOFError as err:
        raise DnsError("network", f"{where} closed the connection") from err
    except OSError as err:
        raise DnsError("network", f"{where}: {err.strerror or err}") from err
    return response


def _check_rcode(response: dns.message.Message, host: str, port: int) -> None:
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


def _to_answer(
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


def _nonexistent(qname_text: str, rdtype: str) -> DnsAnswer:
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
    if isinstance(rdata, dns.rdtypes.ANY.TLSA.TLSA):
        return TlsaRecord(
            usage=rdata.usage, selector=rdata.selector, mtype=rdata.mtype, data=bytes(rdata.cert)
        )
    if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
        return TxtRecord(strings=tuple(bytes(s) for s in rdata.strings))
    if isinstance(rdata, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
        return AddressRecord(address=str(rdata.address))
    raise DnsError("malformed", f"unexpected record type {dns.rdatatype.to_text(rdata.rdtype)}")


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _presentation(answer: DnsAnswer) -> list[str]:
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


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000.0, 3)


def valid_name(name: str) -> bool:
    """True for a lowercase A-label name without trailing dot that fits in a DNS query.

    Underscores are allowed for ``_25._tcp`` and ``_mta-sts`` style owner names.
    """
    return well_formed_name(name) and len(name) <= MAX_NAME_CHARS


def well_formed_name(name: str) -> bool:
    """Lowercase LDH (and ``_``) labels of 1..63 octets, whatever the total length."""
    return bool(name) and all(_LABEL_RE.fullmatch(label) for label in name.split("."))


def system_nameservers(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The ``nameserver`` lines of resolv.conf(5), port 53; 127.0.0.1 when there are none.

    IPv6 scope ids (``fe80::1%eth0``) are dropped: dnspython sends to the bare address.
    Unparsable addresses are skipped, as glibc does.
    """
    found: list[tuple[str, int]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.readlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        address = fields[1].split("%", 1)[0]
        try:
            found.append((str(ipaddress.ip_address(address)), 53))
        except ValueError:
            continue
    return found or list(DEFAULT_NAMESERVERS)
