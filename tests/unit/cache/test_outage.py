"""The outage state machine on its own: one warning, probes with backoff, one recovery line."""

from __future__ import annotations

import logging

import pytest

from tests.unit.cache.helpers import FakeClock
from tlspolicy.cache.outage import PROBE_BACKOFF_MAX_S, PROBE_BACKOFF_MIN_S, Outage
from tlspolicy.errors import CacheError


class Probe:
    def __init__(self) -> None:
        self.calls = 0
        self.up = False

    async def __call__(self) -> None:
        self.calls += 1
        if not self.up:
            raise CacheError("still down")


async def test_outage_probes_with_doubling_backoff_and_logs_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, probe = FakeClock(), Probe()
    outage = Outage("flaky", probe, clock=clock, logger=logging.getLogger("t.outage"))
    assert await outage.ready() and outage.healthy
    with caplog.at_level(logging.INFO, logger="t.outage"):
        outage.fail(CacheError("connection refused"))
        outage.fail(CacheError("again"))  # the same outage: no second line
        assert outage.reason == "connection refused"
        assert not await outage.ready() and probe.calls == 0  # before the first probe
        waits = []
        wait = PROBE_BACKOFF_MIN_S
        for _ in range(8):
            clock.advance(wait)
            assert not await outage.ready()
            waits.append(wait)
            wait = min(wait * 2, PROBE_BACKOFF_MAX_S)
        assert probe.calls == 8
        assert waits[-1] == PROBE_BACKOFF_MAX_S
        probe.up = True
        clock.advance(PROBE_BACKOFF_MAX_S)
        assert await outage.ready() and outage.healthy
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 2
    assert lines[0].startswith("cache backend flaky unavailable: connection refused")
    assert lines[1].startswith("cache backend flaky available again after")


async def test_outage_soon_after_recovery_keeps_the_longer_backoff() -> None:
    clock, probe = FakeClock(), Probe()
    outage = Outage("flaky", probe, clock=clock, logger=logging.getLogger("t.outage"))
    outage.fail(CacheError("down"))
    probe.up = True
    clock.advance(PROBE_BACKOFF_MIN_S)
    assert await outage.ready()
    outage.fail(CacheError("down again"))  # flapping: the next probe waits twice as long
    clock.advance(PROBE_BACKOFF_MIN_S)
    assert not await outage.ready()
    clock.advance(PROBE_BACKOFF_MIN_S)
    assert await outage.ready()
