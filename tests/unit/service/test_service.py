from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest

from tests.fakes import FakeDns, FakeFetcher
from tlspolicy.cache.backends.memory import MemoryBackend
from tlspolicy.cache.store import PolicyCache
from tlspolicy.config import Config, parse_config
from tlspolicy.dnsstub.data import AddressRecord, MxRecord, TlsaRecord, TxtRecord
from tlspolicy.server.answers import Answerer
from tlspolicy.service.service import PolicyService

POLICY = "version: STSv1\nmode: enforce\nmx: mx.sts.example\nmax_age: 86400\n"
TLSA = TlsaRecord(3, 1, 1, b"\x01" * 32)


@dataclass
class Clock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def add_host(dns: FakeDns, host: str, *, tlsa: bool) -> None:
    dns.set(host, "A", [AddressRecord("192.0.2.1")])
    if tlsa:
        dns.set(f"_25._tcp.{host}", "TLSA", [TLSA])


def make_world() -> tuple[FakeDns, FakeFetcher]:
    dns = FakeDns()
    dns.set("dane.example", "MX", [MxRecord(10, "mx.dane.example")])
    add_host(dns, "mx.dane.example", tlsa=True)
    dns.set("sts.example", "MX", [MxRecord(10, "mx.sts.example")])
    add_host(dns, "mx.sts.example", tlsa=False)
    dns.set("_mta-sts.sts.example", "TXT", [TxtRecord((b"v=STSv1; id=one;",))])
    dns.set("both.example", "MX", [MxRecord(10, "mx.dane.example")])
    dns.set("_mta-sts.both.example", "TXT", [TxtRecord((b"v=STSv1; id=one;",))])
    fetcher = FakeFetcher({"sts.example": POLICY, "both.example": POLICY})
    return dns, fetcher


class Edge:
    """The service behind the socketmap edge, as the server runs it: replies as text."""

    def __init__(self, service: PolicyService) -> None:
        self.service = service
        self.cache = service.cache
        self.answers = Answerer(service, clock=service.clock)

    async def answer(self, name: str, key: str) -> str:
        return await self.answers.answer(name, key)

    def answer_now(self, name: str, key: str) -> str | None:
        return self.answers.answer_now(name, key)

    async def start(self) -> None:
        await self.service.start()

    async def aclose(self) -> None:
        await self.service.aclose()


def make_service(
    dns: FakeDns, fetcher: FakeFetcher, clock: Clock, config: Config | None = None
) -> Edge:
    config = config or parse_config({"cache": {"backend": "memory", "refresh_ahead": False}})
    cache = PolicyCache(MemoryBackend(max_entries=1000, clock=clock), hot_entries=100, hot_ttl=5)
    return Edge(PolicyService(config, dns=dns, fetcher=fetcher, cache=cache, clock=clock))


@pytest.fixture
def world() -> tuple[FakeDns, FakeFetcher, Clock, Edge]:
    dns, fetcher = make_world()
    clock = Clock()
    return dns, fetcher, clock, make_service(dns, fetcher, clock)


async def test_service_dane_only_then_from_cache(world) -> None:
    dns, _, _, service = world
    await service.cache.open()
    assert await service.answer("QUERY", "dane.example") == "OK dane-only"
    before = len(dns.queries)
    assert await service.answer("QUERY", "DANE.example.") == "OK dane-only"
    assert len(dns.queries) == before


async def test_service_sts_enforce_then_from_cache(world) -> None:
    dns, fetcher, _, service = world
    await service.cache.open()
    reply = await service.answer("QUERY", "sts.example")
    assert reply == "OK secure match=mx.sts.example servername=hostname"
    queries, fetches = len(dns.queries), len(fetcher.calls)
    assert await service.answer("QUERY", "sts.example") == reply
    assert (len(dns.queries), len(fetcher.calls)) == (queries, fetches)


async def test_service_tlsrpt_profile(world) -> None:
    _, _, _, service = world
    await service.cache.open()
    reply = await service.answer("QUERYwithTLSRPT", "sts.example")
    assert "policy_type=sts policy_domain=sts.example mx_host_pattern=mx.sts.example" in reply
    assert await service.answer("QUERYwithTLSRPT", "dane.example") == "OK dane-only"


async def test_service_dane_wins_over_sts(world) -> None:
    _, _, _, service = world
    await service.cache.open()
    assert await service.answer("QUERYwithTLSRPT", "both.example") == "OK dane-only"


async def test_service_dane_answer_asks_nothing_about_mta_sts(world) -> None:
    # DNS economy (RFC 8461 §2, DANE first): a DANE-decided domain needs no _mta-sts
    # TXT and no policy fetch; a domain without DANE asks for it after the MX answer.
    dns, fetcher, _, service = world
    await service.cache.open()
    assert await service.answer("QUERY", "both.example") == "OK dane-only"
    assert ("_mta-sts.both.example", "TXT") not in dns.queries
    assert fetcher.calls == []
    await service.answer("QUERY", "sts.example")
    asked = dns.queries.index(("_mta-sts.sts.example", "TXT"))
    assert dns.queries.index(("sts.example", "MX")) < asked


async def test_service_dane_answer_does_not_wait_for_https(world) -> None:
    _, fetcher, _, service = world
    await service.cache.open()
    fetcher.delay = 5.0
    reply = await asyncio.wait_for(service.answer("QUERY", "both.example"), 1.0)
    assert reply == "OK dane-only"
    await service.aclose()


async def test_service_dns_failure_is_temp_not_sts(world) -> None:
    dns, _, _, service = world
    await service.cache.open()
    dns.fail("both.example", "MX")
    reply = await service.answer("QUERY", "both.example")
    assert reply.startswith("TEMP ")
    assert "servfail" in reply


async def test_service_coalesces_concurrent_lookups(world) -> None:
    dns, fetcher, _, service = world
    await service.cache.open()
    fetcher.delay = 0.05
    replies = await asyncio.gather(*(service.answer("QUERY", "sts.example") for _ in range(20)))
    assert set(replies) == {"OK secure match=mx.sts.example servername=hostname"}
    assert dns.queries.count(("sts.example", "MX")) == 1
    assert dns.queries.count(("_mta-sts.sts.example", "TXT")) == 1
    assert fetcher.calls == ["sts.example"]


async def test_service_txt_id_change_refetches_in_background(world) -> None:
    dns, fetcher, clock, service = world
    await service.cache.open()
    first = await service.answer("QUERY", "sts.example")
    clock.now += 120  # past recheck_interval, policy still valid
    dns.set("_mta-sts.sts.example", "TXT", [TxtRecord((b"v=STSv1; id=two;",))])
    fetcher.policies["sts.example"] = POLICY.replace("mx.sts.example", "*.sts.example")
    assert await service.answer("QUERY", "sts.example") == first  # served from cache now
    await asyncio.sleep(0.05)  # the background re-check ran
    assert fetcher.calls == ["sts.example", "sts.example"]
    assert await service.answer("QUERY", "sts.example") == (
        "OK secure match=.sts.example servername=hostname"
    )


async def test_service_fresh_dane_overrides_cached_sts(world) -> None:
    dns, _, clock, service = world
    await service.cache.open()
    assert (await service.answer("QUERY", "sts.example")).startswith("OK secure")
    add_host(dns, "mx.sts.example", tlsa=True)
    clock.now += 2000  # the "no DANE" branch expired; the MTA-STS policy is still valid
    assert await service.answer("QUERY", "sts.example") == "OK dane-only"


async def test_service_unknown_map_is_perm(world) -> None:
    _, _, _, service = world
    assert await service.answer("NOSUCH", "sts.example") == "PERM unknown map NOSUCH"


async def test_service_keys_without_lookup(world) -> None:
    dns, _, _, service = world
    for key in (".sts.example", "[192.0.2.1]", "192.0.2.1", ""):
        assert await service.answer("QUERY", key) == "NOTFOUND "
    # A name that cannot exist is NOTFOUND without lookup, not a closed connection.
    assert await service.answer("QUERY", "a" * 64 + ".example") == "NOTFOUND "
    assert dns.queries == []


async def test_service_request_timeout_is_temp() -> None:
    dns, fetcher = make_world()
    fetcher.delay = 10
    config = parse_config({"cache": {"backend": "memory"}, "server": {"request_timeout": 0.2}})
    service = make_service(dns, fetcher, Clock(), config)
    await service.cache.open()
    assert await service.answer("QUERY", "sts.example") == "TEMP policy lookup timed out"
    await service.aclose()


async def test_service_fetch_failure_without_cache_is_notfound(world) -> None:
    _, fetcher, _, service = world
    await service.cache.open()
    del fetcher.policies["sts.example"]
    assert await service.answer("QUERY", "sts.example") == "NOTFOUND "
    assert await service.answer("QUERY", "sts.example") == "NOTFOUND "
    assert fetcher.calls == ["sts.example"]  # 5-minute backoff per id


async def test_service_refresh_ahead_refreshes_used_dane_entry() -> None:
    dns, fetcher = make_world()
    clock = Clock()
    config = parse_config({"cache": {"backend": "memory", "refresh_ahead": True}})
    service = make_service(dns, fetcher, clock, config)
    await service.cache.open()
    await service.start()
    assert await service.answer("QUERY", "dane.example") == "OK dane-only"
    entry = await service.cache.get("dane.example")
    assert entry is not None and entry.dane is not None
    clock.now = entry.dane.expires_at - 10  # within the refresh window
    await service.answer("QUERY", "dane.example")  # a use: schedules a jittered refresh
    clock.now += 6  # past the jitter (at most half of the remaining 10 s)
    for _ in range(100):
        await asyncio.sleep(0.02)
        refreshed = await service.cache.get("dane.example")
        if (
            refreshed is not None
            and refreshed.dane is not None
            and refreshed.dane.checked_at > entry.dane.checked_at
        ):
            break
    else:
        pytest.fail("entry was not refreshed ahead of expiry")
    await service.aclose()


async def test_service_answer_now_serves_memo_from_cache_only(world) -> None:
    dns, _, _, service = world
    await service.cache.open()
    assert service.answer_now("QUERY", "sts.example") is None  # nothing known yet
    live = await service.answer("QUERY", "sts.example")
    assert service.answer_now("QUERY", "sts.example") is None  # a live answer is not memoised
    assert await service.answer("QUERY", "sts.example") == live  # from the cache: memoised
    queries = len(dns.queries)
    assert service.answer_now("QUERY", "sts.example") == live
    assert service.answer_now("QUERYwithTLSRPT", "sts.example") is None  # per map
    assert len(dns.queries) == queries


async def test_service_answer_now_never_outlives_the_recheck(world) -> None:
    _, _, clock, service = world
    await service.cache.open()
    await service.answer("QUERY", "sts.example")
    await service.answer("QUERY", "sts.example")
    assert service.answer_now("QUERY", "sts.example") is not None
    clock.now += 4  # within hot_ttl (5 s) and the recheck interval
    assert service.answer_now("QUERY", "sts.example") is not None
    clock.now += 2  # past hot_ttl: the memory backend has no other writer to wait for
    assert service.answer_now("QUERY", "sts.example") is not None
    clock.now += 54  # the recheck interval (60 s)
    assert service.answer_now("QUERY", "sts.example") is None


async def test_service_answer_now_dropped_when_new_data_is_stored(world) -> None:
    dns, fetcher, clock, service = world
    await service.cache.open()
    await service.answer("QUERY", "sts.example")
    await service.answer("QUERY", "sts.example")
    assert service.answer_now("QUERY", "sts.example") is not None
    clock.now += 61  # id re-check due: the slow path answers and re-checks in the background
    assert service.answer_now("QUERY", "sts.example") is None
    dns.set("_mta-sts.sts.example", "TXT", [TxtRecord((b"v=STSv1; id=two;",))])
    fetcher.policies["sts.example"] = POLICY.replace("mx.sts.example", "*.sts.example")
    await service.answer("QUERY", "sts.example")
    await asyncio.sleep(0.05)
    assert service.answer_now("QUERY", "sts.example") is None
    assert await service.answer("QUERY", "sts.example") == (
        "OK secure match=.sts.example servername=hostname"
    )


async def test_service_answer_now_never_for_temp(world) -> None:
    dns, _, _, service = world
    await service.cache.open()
    dns.fail("dane.example", "MX")
    for _ in range(3):
        assert (await service.answer("QUERY", "dane.example")).startswith("TEMP")
    assert service.answer_now("QUERY", "dane.example") is None


async def test_service_stores_nothing_while_the_resolver_does_not_validate(world) -> None:
    dns, _, _, edge = world
    await edge.cache.open()
    edge.service.lookups.dns_trusted = lambda: False
    assert await edge.answer("QUERY", "dane.example") == "OK dane-only"
    assert await edge.cache.get("dane.example") is None  # not kept past the repair
    before = len(dns.queries)
    assert await edge.answer("QUERY", "dane.example") == "OK dane-only"
    assert len(dns.queries) > before  # looked up again
    edge.service.lookups.dns_trusted = lambda: True
    await edge.answer("QUERY", "dane.example")
    assert await edge.cache.get("dane.example") is not None


async def test_service_lookup_log_line_carries_separate_fields(
    world, caplog: pytest.LogCaptureFixture
) -> None:
    _, _, _, service = world
    await service.cache.open()
    with caplog.at_level(logging.DEBUG, logger="tlspolicy.service"):
        await service.answer("QUERY", "dane.example")
        await service.answer("QUERY", "dane.example")
    live, cached = [r for r in caplog.records if getattr(r, "domain", None) == "dane.example"]
    assert (live.map, live.answer, live.source) == ("QUERY", "dane-only", "live")  # type: ignore[attr-defined]
    assert live.duration_ms >= 0 and live.reason  # type: ignore[attr-defined]
    assert (cached.answer, cached.source) == ("dane-only", "cache")  # type: ignore[attr-defined]
