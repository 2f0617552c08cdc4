"""The DNS adapter: asks the configured validating resolver and returns ``DnsAnswer``s.

This is the only module that talks DNS on the wire. It keeps these rules:

* Every query carries EDNS0 and RD and AD set, DO clear, so the resolver validates and
  reports the result in the AD flag without sending the signatures (RFC 7672 §2.1.1;
  RFC 4035 §3.2.3; RFC 6840 §5.7; see ``dnscodec``). ``secure`` is the AD flag of the
  response; trusting it needs a trusted path to the resolver (loopback).
* UDP first, TCP when the response is truncated (``dnstransport``: long-lived sockets,
  replies matched by query ID).
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

from tlspolicy.config.defaults import DNS_UDP_SIZE
from tlspolicy.dnsstub import codec as dnscodec
from tlspolicy.dnsstub import trace
from tlspolicy.dnsstub import transport as dnstransport
from tlspolicy.dnsstub.answer import (
    check_rcode,
    nonexistent,
    presentation,
    to_answer,
)
from tlspolicy.dnsstub.data import DnsAnswer
from tlspolicy.dnsstub.trace import TraceEvent
from tlspolicy.errors import DnsError
from tlspolicy.names import MAX_HOST_CHARS

# Record types the callers ask for; "CNAME" returns only the chain (``DnsAnswer.cnames``).
# A TLSA record whose data does not fit its matching type is kept as it is (``dnscodec``)
# and becomes a TlsaRecord that ``dane/tlsa.py`` judges unusable.


class DnsClient(Protocol):
    """Asks the configured (validating) resolver, with the AD bit set.

    ``query`` returns a ``DnsAnswer`` for NOERROR (with or without data) and NXDOMAIN,
    and raises ``tlspolicy.errors.DnsError`` for everything else. While a trace is being
    recorded (``trace.recording``), each query appends one ``TraceEvent``, also failures.
    """

    async def query(self, name: str, rdtype: str) -> DnsAnswer: ...

    async def aclose(self) -> None: ...


SUPPORTED_RDTYPES = frozenset({"A", "AAAA", "MX", "TXT", "TLSA", "CNAME"})

# EDNS0 UDP payload size in bytes: the DNS Flag Day 2020 value, also postfix-tlspol's
# (docs/protocol-notes.md §7.3).

# Presentation-format names (RFC 1035 §2.3.4): 253 characters, labels of 1..63 octets.
# With only plain characters (no escapes) 253 characters are 255 octets on the wire.
_NAME_RE = re.compile(r"(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}")  # labels, one match

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
        udp_size: int = DNS_UDP_SIZE,
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
        if trace.current() is None:  # the server's path: no event to build
            if len(qname_text) > MAX_HOST_CHARS and well_formed_name(qname_text):
                return nonexistent(qname_text, rdtype)
            return await self._resolve(qname_text, rdtype)
        event = TraceEvent(kind="dns", name=qname_text, detail=rdtype)
        try:
            if len(qname_text) > MAX_HOST_CHARS and well_formed_name(qname_text):
                answer = nonexistent(qname_text, rdtype)
                event.data = ["NXDOMAIN (name longer than 255 octets, not sent)"]
            else:
                answer = await self._resolve(qname_text, rdtype)
                event.data = presentation(answer)
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
        """Nothing to release here: the shared ``dnstransport`` sockets are closed by the
        process that owns them (``tlspolicy serve`` at shutdown)."""

    async def _resolve(self, qname_text: str, rdtype: str) -> DnsAnswer:
        if not valid_name(qname_text):
            raise DnsError("malformed", "invalid domain name", name=qname_text, rdtype=rdtype)
        query = dnstransport.Query(
            qname_text, dnscodec.encode_name(qname_text), dnscodec.QTYPES[rdtype], self._udp_size
        )
        response = await self._ask_servers(query, qname_text, rdtype)
        return to_answer(response, qname_text, rdtype)

    async def _ask_servers(
        self, query: dnstransport.Query, qname_text: str, rdtype: str
    ) -> dnscodec.Response:
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
                check_rcode(response, host, port)
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
    query: dnstransport.Query, host: str, port: int, budget_s: float
) -> dnscodec.Response:
    """One UDP(+TCP) exchange; the single place where transport exceptions are translated."""
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        # A stray or forged datagram (wrong ID, wrong source, garbage) is dropped and the
        # wait goes on: failing on the first one would let any packet defer the mail.
        # Long-lived sockets matched by query ID, TCP on truncation, all of it within
        # ``budget_s`` (dnstransport.py raises TimeoutError past it).
        response = await dnstransport.exchange(query, host, port, budget_s)
    except TimeoutError:
        raise DnsError("timeout", f"no answer from {where} within {budget_s:.2f} s") from None
    except dnstransport.Mismatch as err:
        raise DnsError("malformed", f"mismatched response from {where}: {err}") from err
    except dnscodec.FormatError as err:
        raise DnsError("malformed", f"unparsable response from {where}: {err}") from err
    except EOFError as err:
        raise DnsError("network", f"{where} closed the connection") from err
    except OSError as err:
        raise DnsError("network", f"{where}: {err.strerror or err}") from err
    return response


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000.0, 3)


def valid_name(name: str) -> bool:
    """True for a lowercase A-label name without trailing dot that fits in a DNS query.

    Underscores are allowed for ``_25._tcp`` and ``_mta-sts`` style owner names.
    """
    return well_formed_name(name) and len(name) <= MAX_HOST_CHARS


def well_formed_name(name: str) -> bool:
    """Lowercase LDH (and ``_``) labels of 1..63 octets, whatever the total length."""
    return _NAME_RE.fullmatch(name) is not None


RESOLV_CONF = "/etc/resolv.conf"


def trust_warnings(
    configured: Sequence[tuple[str, int]],
    *,
    trust_remote: bool,
    resolv_conf: str = RESOLV_CONF,
) -> list[str]:
    """Why the AD bit of the resolvers in use may not deserve trust, one line each.

    DANE rests on the AD bit, which travels unsigned between the resolver and us: RFC 7672
    §1.3 (and Postfix's own DANE documentation) ask for a validating resolver on the same
    host. A resolver elsewhere can have its answers forged by anyone on the path. Nothing
    to say when ``trust_remote`` (``dns.trust_remote_resolver``: a trusted link).
    """
    if trust_remote:
        return []
    servers = list(configured) or system_nameservers(resolv_conf)
    remote = [host for host, _ in servers if not ipaddress.ip_address(host).is_loopback]
    if not remote:
        return []
    where = "dns.nameservers" if configured else f"{resolv_conf} (dns.nameservers is empty)"
    if len(remote) == len(servers) and not configured:
        return [
            f"{resolv_conf} names no resolver on loopback ({', '.join(remote)}): DNSSEC"
            " status from a remote resolver can be forged on the way (RFC 7672 §1.3); install"
            " a validating resolver here (apt install unbound) and set dns.nameservers:"
            " [127.0.0.1], or set dns.trust_remote_resolver: true for a resolver on a"
            " trusted link"
        ]
    return [
        f"{where}: {host} is not on loopback: its DNSSEC status (the AD bit) can be forged"
        " on the way (RFC 7672 §1.3); use a validating resolver on 127.0.0.1 (Unbound), or"
        " set dns.trust_remote_resolver: true for a resolver on a trusted link"
        for host in remote
    ]


def system_nameservers(path: str = RESOLV_CONF) -> list[tuple[str, int]]:
    """The ``nameserver`` lines of resolv.conf(5), port 53; 127.0.0.1 when there are none.

    IPv6 scope ids (``fe80::1%eth0``) are dropped: queries go to the bare address.
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
