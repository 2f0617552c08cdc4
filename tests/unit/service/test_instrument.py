"""Lookups counted by outcome around the DNS client and the policy fetcher."""

from __future__ import annotations

import pytest

from tests.fakes import FakeDns
from tlspolicy.dnsstub.data import AddressRecord
from tlspolicy.errors import DnsError, FetchError
from tlspolicy.metrics.sink import NullMetrics
from tlspolicy.service.instrument import CountingDns, CountingFetcher


class Recording(NullMetrics):
    def __init__(self) -> None:
        self.lookups: list[tuple[str, str]] = []

    def lookup(self, kind: str, outcome: str) -> None:
        self.lookups.append((kind, outcome))


async def test_dns_outcomes_are_counted() -> None:
    dns, metrics = FakeDns(), Recording()
    dns.set("a.example", "A", [AddressRecord("192.0.2.1")])
    dns.answers[("b.example", "A")] = DnsError("servfail", "EDE 6 DNSSEC Bogus")
    dns.fail("c.example", "A", "timeout")
    counting = CountingDns(dns, metrics)
    await counting.query("a.example", "A")
    for name in ("b.example", "c.example"):
        with pytest.raises(DnsError):
            await counting.query(name, "A")
    assert metrics.lookups == [("dns", "ok"), ("dns", "bogus"), ("dns", "timeout")]


class Fetcher:
    async def fetch(self, domain: str) -> str:
        if domain == "bad.example":
            raise FetchError("status", "HTTP 404")
        return "version: STSv1\n"

    async def aclose(self) -> None:
        return None


async def test_fetch_outcomes_are_counted() -> None:
    metrics = Recording()
    counting = CountingFetcher(Fetcher(), metrics)
    assert await counting.fetch("good.example") == "version: STSv1\n"
    with pytest.raises(FetchError):
        await counting.fetch("bad.example")
    assert metrics.lookups == [("https", "ok"), ("https", "status")]
