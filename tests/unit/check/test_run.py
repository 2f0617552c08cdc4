"""``run_check`` with fakes: FakeDns, a fake fetcher and prober, and the real PolicyService."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tests.fakes import FakeDns, FakeFetcher
from tests.unit.check.helpers import NOW, Chain, done, failed
from tlspolicy.cache.backends.memory import MemoryBackend
from tlspolicy.cache.store import PolicyCache
from tlspolicy.check.findings import ExitStatus, Report, Status
from tlspolicy.check.run import CheckOptions, run_check
from tlspolicy.check.session import ProbeResult, Stage
from tlspolicy.config import Config, parse_config
from tlspolicy.dnsstub.data import AddressRecord, MxRecord, TlsaRecord, TxtRecord
from tlspolicy.service.service import PolicyService

POLICY = "version: STSv1\nmode: enforce\nmx: mx.sts.example\nmax_age: 604800\n"
CHAIN = Chain("mx.sts.example", "mx.dane.example")


@dataclass
class FakeProber:
    results: dict[str, ProbeResult] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def probe(self, host: str, address: str) -> ProbeResult:
        self.calls.append((host, address))
        return self.results.get(host) or failed(host, Stage.CONNECT, "connection refused")


@dataclass
class Parts:
    config: Config
    dns: FakeDns
    fetcher: FakeFetcher
    service: PolicyService


@pytest.fixture
async def parts() -> AsyncIterator[Parts]:
    dns = FakeDns()
    dns.set("sts.example", "MX", [MxRecord(10, "mx.sts.example")])
    dns.set("mx.sts.example", "A", [AddressRecord("192.0.2.1")])
    dns.set("mx.sts.example", "AAAA", [AddressRecord("2001:db8::1")])
    dns.set("_mta-sts.sts.example", "TXT", [TxtRecord((b"v=STSv1; id=one;",))])
    dns.set(
        "_smtp._tls.sts.example", "TXT", [TxtRecord((b"v=TLSRPTv1; rua=mailto:r@sts.example",))]
    )
    dns.set("dane.example", "MX", [MxRecord(10, "mx.dane.example")])
    dns.set("mx.dane.example", "A", [AddressRecord("192.0.2.2")])
    dns.set("_25._tcp.mx.dane.example", "TLSA", [CHAIN.ee_311(), CHAIN.ta_201()])
    config = parse_config({"cache": {"backend": "memory", "refresh_ahead": False}})
    cache = PolicyCache(MemoryBackend(max_entries=100), hot_entries=10, hot_ttl=5)
    fetcher = FakeFetcher({"sts.example": POLICY})
    service = PolicyService(config, dns=dns, fetcher=fetcher, cache=cache)
    yield Parts(config, dns, fetcher, service)
    await service.aclose()


async def check(parts: Parts, domain: str, prober: FakeProber | None, **options: object) -> Report:
    return await run_check(parts, domain, CheckOptions(**options), prober=prober, now=NOW)  # type: ignore[arg-type]


def statuses(report: Report, check_key: str) -> list[Status]:
    return [f.status for f in report.findings if f.check == check_key]


async def test_run_good_mta_sts_domain(parts: Parts) -> None:
    prober = FakeProber({"mx.sts.example": done("mx.sts.example", CHAIN)})
    report = await check(parts, "sts.example", prober)
    assert report.exit_status is ExitStatus.OK, [
        f for f in report.findings if f.status is not Status.OK
    ]
    assert report.facts["verdict"] == "secure"
    assert sorted(prober.calls) == [
        ("mx.sts.example", "192.0.2.1"),
        ("mx.sts.example", "2001:db8::1"),
    ]
    assert len(statuses(report, "smtp.starttls")) == 2  # IPv4 and IPv6 separately


async def test_run_families_and_no_smtp(parts: Parts) -> None:
    prober = FakeProber({"mx.sts.example": done("mx.sts.example", CHAIN)})
    await check(parts, "sts.example", prober, families=("IPv6",))
    assert prober.calls == [("mx.sts.example", "2001:db8::1")]
    report = await check(parts, "sts.example", None)
    assert statuses(report, "smtp.starttls") == [Status.SKIPPED]
    assert report.exit_status is ExitStatus.OK


async def test_run_dane_domain_matches_and_unreachable_host_is_an_error(parts: Parts) -> None:
    good = await check(
        parts, "dane.example", FakeProber({"mx.dane.example": done("mx.dane.example", CHAIN)})
    )
    assert statuses(good, "dane.match") == [Status.OK]
    assert good.facts["reply"] == "OK dane-only"
    assert good.exit_status is ExitStatus.OK
    down = await check(parts, "dane.example", FakeProber())
    assert statuses(down, "smtp.connect") == [Status.ERROR]
    assert statuses(down, "dane.match") == [Status.SKIPPED]
    assert down.exit_status is ExitStatus.ERROR


async def test_run_resolver_timeout_is_unknown(parts: Parts) -> None:
    parts.dns.fail("sts.example", "MX", kind="timeout")
    report = await check(parts, "sts.example", FakeProber())
    assert report.exit_status is ExitStatus.UNKNOWN and "did not answer" in report.unknown
    assert report.findings == ()


async def test_run_servfail_is_the_domains_fault(parts: Parts) -> None:
    parts.dns.fail("sts.example", "MX", kind="servfail")
    report = await check(parts, "sts.example", FakeProber())
    assert report.exit_status is ExitStatus.ERROR
    assert report.first_fix is not None and report.first_fix.check == "mx.records"
    assert report.facts["verdict"] == "temp"


async def test_run_fetch_failure_and_tlsa_lookup_records(parts: Parts) -> None:
    parts.fetcher.policies.clear()
    report = await check(parts, "sts.example", None)
    assert statuses(report, "mta-sts-policy.fetch") == [Status.ERROR]
    assert report.facts["verdict"] == "notfound"
    parts.dns.set("_25._tcp.mx.dane.example", "TLSA", [TlsaRecord(3, 1, 1, b"\0" * 32)])
    bad = await check(
        parts, "dane.example", FakeProber({"mx.dane.example": done("mx.dane.example", CHAIN)})
    )
    assert statuses(bad, "dane.match") == [Status.ERROR]
    assert statuses(bad, "dane.rollover") == [Status.WARNING]
