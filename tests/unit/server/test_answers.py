"""The socketmap edge: outcomes formatted, counted by verdict (never by parsing text),
memoised only when the plan says the cached decision holds."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.unit.test_service import Clock, make_service, make_world
from tlspolicy.metricsink import NullMetrics
from tlspolicy.server.answers import Answerer


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
    clock.now += 5  # hot_ttl
    assert answers.answer_now("QUERY", "sts.example") is None
    answers.service.reconfigure(answers.service.config)  # SIGHUP drops every memo
    assert len(answers.memo) == 0


async def test_answers_by_wire_are_the_memo_framed_and_counted_alike() -> None:
    answers, metrics, clock = edge()
    await answers.service.cache.open()
    request = b"18:QUERY dane.example,"
    assert answers.answer_wire(request) is None  # nothing memoised yet
    await answers.answer("QUERY", "dane.example")  # live
    await answers.answer("QUERY", "dane.example")  # cache: memoised
    assert answers.answer_wire(request) == b"12:OK dane-only,"
    assert metrics.queries[("QUERY", "dane-only")] == 3 and metrics.hot[True] == 2
    clock.now += 5  # hot_ttl: the memo is gone, by bytes too
    assert answers.answer_wire(request) is None
