"""Fakes for unit tests (the integration suite uses the real lab instead)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tlspolicy.dnsstub.data import DnsAnswer, Record
from tlspolicy.dnsstub.trace import TraceEvent, record
from tlspolicy.errors import DnsError, FetchError


@dataclass
class FakeDns:
    """A table-driven DnsClient.

    ``answers[(name, rdtype)]`` is a DnsAnswer or a DnsError to raise. Names not in the
    table give a NXDOMAIN answer whose ``secure`` flag is ``default_secure``. Every query is
    counted in ``queries`` so tests can check coalescing and "no lookup" rules.
    """

    answers: dict[tuple[str, str], DnsAnswer | DnsError] = field(default_factory=dict)
    default_secure: bool = True
    queries: list[tuple[str, str]] = field(default_factory=list)

    def set(
        self,
        name: str,
        rdtype: str,
        records: list[Record] | tuple[Record, ...] = (),
        *,
        secure: bool = True,
        ttl: int = 300,
        rcode: str = "NOERROR",
        cnames: tuple[tuple[str, str], ...] = (),
    ) -> None:
        canonical = cnames[-1][1] if cnames else name
        self.answers[(name, rdtype)] = DnsAnswer(
            qname=name,
            rdtype=rdtype,
            rcode=rcode,
            secure=secure,
            cnames=cnames,
            canonical_name=canonical,
            records=tuple(records),
            ttl=ttl,
        )

    def fail(self, name: str, rdtype: str, kind: str = "servfail") -> None:
        self.answers[(name, rdtype)] = DnsError(kind, "fake failure", name=name, rdtype=rdtype)

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        self.queries.append((name, rdtype))
        found = self.answers.get((name, rdtype))
        if found is None:
            found = DnsAnswer(
                qname=name,
                rdtype=rdtype,
                rcode="NXDOMAIN",
                secure=self.default_secure,
                cnames=(),
                canonical_name=name,
                records=(),
                ttl=300,
            )
        if isinstance(found, DnsError):
            record(TraceEvent("dns", name, rdtype, "error"))
            raise found
        record(TraceEvent("dns", name, rdtype, found.status, found.ttl))
        return found

    async def aclose(self) -> None:
        return None


@dataclass
class FakeFetcher:
    """A policy fetcher: ``policies[domain]``, else ``body`` (a policy for every domain, or
    a ``FetchError`` to raise), else an HTTP 404; waits ``delay`` and counts ``calls``."""

    policies: dict[str, str] = field(default_factory=dict)
    body: str | FetchError | None = None
    delay: float = 0.0
    calls: list[str] = field(default_factory=list)

    async def fetch(self, domain: str) -> str:
        self.calls.append(domain)
        if self.delay:
            await asyncio.sleep(self.delay)
        if domain in self.policies:
            return self.policies[domain]
        if isinstance(self.body, FetchError):
            raise self.body
        if self.body is not None:
            return self.body
        raise FetchError("status", "HTTP 404")

    async def aclose(self) -> None:
        return None
