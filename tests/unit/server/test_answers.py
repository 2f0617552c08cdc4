"""The socketmap edge: outcomes formatted, counted by verdict (never by parsing text),
memoised only when the plan says the cached decision holds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.unit.cache.helpers import CountingBackend, FlakyBackend
from tests.unit.service.test_service import Clock, make_service, make_world
from tlspolicy.cache.backend import CacheBackend
from tlspolicy.cache.backends.memory import MemoryBackend
from tlspolicy.cache.store import PolicyCache
from tlspolicy.config import parse_config
from tlspolicy.metrics.sink import NullMetrics
from tlspolicy.server.answers import Answerer
from tlspolicy.service.service import PolicyService


class Recording(NullMetrics):
    def __init__(self) -> None:
        self.queries: Counter[tuple[str, str]] = Counter()
        self.hot: Counter[bool] = Counter()

    def query(self, map_name: str, answer: str) -> None:
        self.queries[(map_name, answer)] += 1

    def cache(self, layer: str, hit: bool) -> None:
        self.hot[hit] += 1


def edge() -> tuple[Answerer, Recording, Any]:
    dns, fetcher = make_world()
    clock = Clock()
    service = make_service(dns, fetcher, clock).service
    metrics = Recording()
    return Answerer(service, metrics=metrics, clock=clock), metrics, clock


async def test_answers_count_by_verdict_and_source() -> None:
    answers, metrics, _ = edge()
    await answers.service.cache.open()
    assert await answers.answer("QUERY", "dane.example") == "OK dane-only"  # live
    assert await answers.answer("QUERY", "dane.example") == "OK dane-only"  # cache, memoised
    assert answers.answer_now("QUERY", "dane.example") == "OK dane-only"  # memo
    assert await answers.answer("QUERY", "sts.example") == (
        "OK secure match=mx.sts.example servername=hostname"
    )
    assert await answers.answer("QUERY", "[192.0.2.1]") == "NOTFOUND "  # no lookup
    assert await answers.answer("NOPE", "dane.example") == "PERM unknown map NOPE"
    assert metrics.queries == Counter(
        {
            ("QUERY", "dane-only"): 3,
            ("QUERY", "secure"): 1,
            ("QUERY", "notfound"): 1,
            ("other", "perm"): 1,  # a client-chosen map name is never a label
        }
    )
    assert metrics.hot == Counter({True: 2, False: 2})  # memo + cache hits; two live answers


async def test_answers_memo_expires_with_the_plan_and_on_new_data() -> None:
    answers, _, clock = edge()
    await answers.service.cache.open()
    await answers.answer("QUERY", "sts.example")
    await answers.answer("QUERY", "sts.example")
    assert answers.answer_now("QUERY", "sts.example") is not None
    for listener in answers.service.on_stored:  # a new result for the domain was stored
        listener("sts.example")
    assert answers.answer_now("QUERY", "sts.example") is None
    await answers.answer("QUERY", "sts.example")
    clock.now += 5  # hot_ttl: no bound with the memory backend, which nobody else writes
    assert answers.answer_now("QUERY", "sts.example") is not None
    clock.now += 60  # mta_sts.recheck_interval: the plan's own bound
    assert answers.answer_now("QUERY", "sts.example") is None
    await answers.answer("QUERY", "sts.example")
    answers.service.reconfigure(answers.service.config)  # SIGHUP drops every memo
    assert len(answers.memo) == 0


def edge_on(backend: Callable[[Clock], CacheBackend]) -> tuple[Answerer, Clock]:
    """An edge whose cache is ``backend(clock)`` (not the memory one: copies are trusted
    for ``hot_ttl`` unless the backend vouches for them)."""
    dns, fetcher = make_world()
    clock = Clock()
    config = parse_config({"cache": {"backend": "memory", "refresh_ahead": False}})
    cache = PolicyCache(backend(clock), hot_entries=100, hot_ttl=5, clock=clock)
    service = PolicyService(config, dns=dns, fetcher=fetcher, cache=cache, clock=clock)
    return Answerer(service, clock=clock), clock


class QuietBackend(CountingBackend):
    """A store others might write (so copies are re-read), that says whether they did."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(MemoryBackend(max_entries=100, clock=clock))
        self.changed = False

    @property
    def name(self) -> str:
        return "quiet"

    async def unchanged_elsewhere(self) -> bool:
        self.calls["unchanged_elsewhere"] += 1
        changed, self.changed = self.changed, False
        return not changed


async def test_answers_memo_lives_past_hot_ttl_only_while_the_cache_vouches() -> None:
    answers, clock = edge_on(QuietBackend)
    cache = answers.service.cache
    await cache.open()
    await cache.check_quiet()  # the first check vouches for nothing yet
    clock.now += 1
    await answers.answer("QUERY", "sts.example")  # live
    await answers.answer("QUERY", "sts.example")  # from cache: memoised
    backend = cache._backend
    assert isinstance(backend, QuietBackend)
    reads = backend.calls["get"]
    for _ in range(8):  # 20 s: four times hot_ttl, a quiet check every hot_ttl / 2
        clock.now += 2.5
        await cache.check_quiet()
        assert answers.answer_now("QUERY", "sts.example") is not None
    assert await cache.get("sts.example") is not None
    assert backend.calls["get"] == reads  # no copy was re-read either
    backend.changed = True  # another process wrote (a purge, another worker)
    await cache.check_quiet()
    assert answers.answer_now("QUERY", "sts.example") is None  # seen: the memo is gone


async def test_answers_memo_of_a_shared_cache_ends_at_hot_ttl() -> None:
    answers, clock = edge_on(lambda c: FlakyBackend(MemoryBackend(max_entries=100, clock=c)))
    cache = answers.service.cache
    await cache.open()
    await answers.answer("QUERY", "sts.example")
    await answers.answer("QUERY", "sts.example")
    await cache.check_quiet()
    clock.now += 2.5
    await cache.check_quiet()  # a shared store never vouches: others write all the time
    assert answers.answer_now("QUERY", "sts.example") is not None
    clock.now += 2.5
    assert answers.answer_now("QUERY", "sts.example") is None


async def test_answers_by_wire_are_the_memo_framed_and_counted_alike() -> None:
    answers, metrics, clock = edge()
    await answers.service.cache.open()
    request = b"18:QUERY dane.example,"
    assert answers.answer_wire(request) is None  # nothing memoised yet
    await answers.answer("QUERY", "dane.example")  # live
    await answers.answer("QUERY", "dane.example")  # cache: memoised
    assert answers.answer_wire(request) == b"12:OK dane-only,"
    assert metrics.queries[("QUERY", "dane-only")] == 3 and metrics.hot[True] == 2
    clock.now += 86400  # past the DANE result's life: the memo is gone, by bytes too
    assert answers.answer_wire(request) is None
