"""Overrides and shadow maps at the socketmap edge: what is sent, memoised, logged, counted."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest

from tests.unit.service.test_service import Clock, make_service, make_world
from tlspolicy.config import parse_config
from tlspolicy.metrics.sink import NullMetrics
from tlspolicy.server.answers import Answerer

STS_REPLY = "OK secure match=mx.sts.example servername=hostname"


class Recording(NullMetrics):
    def __init__(self) -> None:
        self.queries: Counter[tuple[str, str]] = Counter()
        self.overrides: Counter[str] = Counter()
        self.shadows: Counter[str] = Counter()

    def query(self, map_name: str, answer: str) -> None:
        self.queries[(map_name, answer)] += 1

    def override(self, state: str) -> None:
        self.overrides[state] += 1

    def shadow(self, answer: str) -> None:
        self.shadows[answer] += 1


def edge(**config: Any) -> tuple[Answerer, Recording, Clock]:
    dns, fetcher = make_world()
    clock = Clock()
    parsed = parse_config({"cache": {"backend": "memory", "refresh_ahead": False}, **config})
    service = make_service(dns, fetcher, clock, parsed).service
    metrics = Recording()
    service.metrics = service.gate.metrics = metrics
    return Answerer(service, metrics=metrics, clock=clock), metrics, clock


def _until(clock: Clock, seconds: float) -> str:
    from datetime import UTC, datetime  # noqa: PLC0415

    return datetime.fromtimestamp(clock.now + seconds, UTC).isoformat()


async def test_override_answers_before_lookups_and_its_memo_ends_at_expiry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "tlspolicy.service")
    clock = Clock()
    answers, metrics, clock = edge(
        overrides={"sts.example": {"level": "may", "until": _until(clock, 3), "reason": "ticket"}}
    )
    await answers.service.cache.open()
    assert await answers.answer("QUERY", "sts.example") == "OK may"
    assert answers.answer_now("QUERY", "sts.example") == "OK may"  # memoised...
    clock.now += 3
    assert answers.answer_now("QUERY", "sts.example") is None  # ...never past the expiry
    assert await answers.answer("QUERY", "sts.example") == STS_REPLY
    assert await answers.answer("QUERY", "sts.example") == STS_REPLY
    assert metrics.overrides == Counter({"active": 2, "expired": 2})  # the memo hit counts
    assert metrics.queries[("QUERY", "may")] == 2
    assert "sts.example: may by override (reason: ticket; until" in caplog.text
    assert caplog.text.count("override may expired at") == 1  # logged once


async def test_override_that_weakens_is_warned_rate_limited_and_listed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "tlspolicy.service")  # a CLI test may raise the root level
    answers, _, clock = edge(overrides={"dane.example": {"level": "encrypt", "reason": "x"}})
    service = answers.service
    await service.cache.open()
    service.overrides.set_configured(())  # learn that it is a DANE domain first
    assert await answers.answer("QUERY", "dane.example") == "OK dane-only"
    service.overrides.set_configured(service.config.overrides)
    for _ in range(3):
        assert await answers.answer("QUERY", "dane.example") == "OK encrypt"
        answers.memo.forget()
    assert caplog.text.count("override encrypt weakens DANE") == 1
    clock.now += 61
    assert await answers.answer("QUERY", "dane.example") == "OK encrypt"
    assert caplog.text.count("override encrypt weakens DANE") == 2
    listed = service.weakening_overrides()
    assert [(o["domain"], o["weakens"], o["level"]) for o in listed] == [
        ("dane.example", "DANE", "encrypt")
    ]


async def test_lookup_override_exempts_a_name_below_a_subdomains_override() -> None:
    answers, _, _ = edge(
        overrides={
            "example": {"level": "none", "subdomains": True},
            "sts.example": {"level": "lookup"},
        }
    )
    await answers.service.cache.open()
    assert await answers.answer("QUERY", "dane.example") == "OK none"
    assert await answers.answer("QUERY", "sts.example") == STS_REPLY


async def test_shadow_map_answers_notfound_and_counts_what_it_would_send(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "tlspolicy.server")
    answers, metrics, _ = edge(maps={"QUERY": {"shadow": True}, "LIVE": {}})
    await answers.service.cache.open()
    assert await answers.answer("QUERY", "dane.example") == "NOTFOUND "  # live
    assert await answers.answer("QUERY", "dane.example") == "NOTFOUND "  # cache, memoised
    assert answers.answer_now("QUERY", "dane.example") == "NOTFOUND "  # memo
    assert await answers.answer("LIVE", "dane.example") == "OK dane-only"
    assert metrics.shadows == Counter({"dane-only": 3})
    assert metrics.queries == Counter({("QUERY", "notfound"): 3, ("LIVE", "dane-only"): 1})
    assert "shadow QUERY dane.example: would answer OK dane-only" in caplog.text
