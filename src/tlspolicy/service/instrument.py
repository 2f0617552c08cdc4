"""Metrics around the I/O adapters, so lookups are counted by outcome in one place."""

from __future__ import annotations

from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.dnsstub.data import DnsAnswer
from tlspolicy.errors import DnsError, FetchError
from tlspolicy.metrics.sink import MetricsSink
from tlspolicy.mtasts.lookup import Fetcher


class CountingDns:
    """A DnsClient that counts every query by outcome (nxdomain, servfail, timeout, ...)."""

    def __init__(self, inner: DnsClient, metrics: MetricsSink) -> None:
        self.inner = inner
        self.metrics = metrics

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        try:
            answer = await self.inner.query(name, rdtype)
        except DnsError as exc:
            bogus = exc.kind == "servfail" and "bogus" in exc.detail.lower()
            self.metrics.lookup("dns", "bogus" if bogus else exc.kind)
            raise
        self.metrics.lookup("dns", "nxdomain" if answer.rcode == "NXDOMAIN" else "ok")
        return answer

    async def aclose(self) -> None:
        await self.inner.aclose()


class CountingFetcher:
    """A Fetcher that counts policy fetches by outcome (ok or the FetchError kind)."""

    def __init__(self, inner: Fetcher, metrics: MetricsSink) -> None:
        self.inner = inner
        self.metrics = metrics

    async def fetch(self, domain: str) -> str:
        try:
            text = await self.inner.fetch(domain)
        except FetchError as exc:
            self.metrics.lookup("https", exc.kind)
            raise
        self.metrics.lookup("https", "ok")
        return text
