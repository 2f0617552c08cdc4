"""The lookup branches: coalesced per domain and branch, stored, and the MTA-STS downgrade
warning."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.unit.cache.helpers import FakeClock
from tests.unit.service.test_service import POLICY, FakeFetcher, make_world
from tlspolicy.cache.backends.memory import MemoryBackend
from tlspolicy.cache.coordination import Coordinator
from tlspolicy.cache.store import PolicyCache
from tlspolicy.config import parse_config
from tlspolicy.dane.result import DaneLevel
from tlspolicy.mtasts.policy import parse_policy
from tlspolicy.mtasts.state import StsState
from tlspolicy.service.lookups import BranchLookups, shielded, sts_downgraded


def build() -> tuple[BranchLookups, FakeFetcher, list[str]]:
    dns, fetcher = make_world()
    clock = FakeClock()
    cache = PolicyCache(
        MemoryBackend(max_entries=10, clock=clock), hot_entries=10, hot_ttl=5, clock=clock
    )
    stored: list[str] = []
    lookups = BranchLookups(
        parse_config({"cache": {"backend": "memory"}}),
        dns=dns,
        fetcher=fetcher,
        coordinator=Coordinator(cache, clock=clock),
        clock=clock,
        on_stored=stored.append,
    )
    return lookups, fetcher, stored


async def test_concurrent_lookups_of_one_branch_share_one_task() -> None:
    lookups, fetcher, stored = build()
    await lookups.coordinator.cache.open()
    fetcher.delay = 0.05
    first, second = lookups.sts("sts.example"), lookups.sts("sts.example")
    assert first is second
    assert lookups.inflight("sts.example", "sts") is first
    state = await shielded(first)
    assert state.policy is not None and fetcher.calls == ["sts.example"]
    assert lookups.inflight("sts.example", "sts") is None
    entry = await lookups.coordinator.cache.get("sts.example")
    assert entry is not None and entry.sts == state
    assert stored == ["sts.example"]


async def test_dane_temp_is_never_stored() -> None:
    lookups, _, stored = build()
    await lookups.coordinator.cache.open()
    lookups.dns.fail("dane.example", "MX")  # type: ignore[attr-defined]
    result = await shielded(lookups.dane("dane.example"))
    assert result.level is DaneLevel.TEMP
    assert await lookups.coordinator.cache.get("dane.example") is None and stored == []


async def test_a_cancelled_waiter_does_not_cancel_the_lookup() -> None:
    lookups, fetcher, _ = build()
    await lookups.coordinator.cache.open()
    fetcher.delay = 0.1
    task = lookups.sts("sts.example")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await shielded(task)
    assert (await task).policy is not None


def test_sts_downgrade_is_logged_only_from_enforce(caplog: pytest.LogCaptureFixture) -> None:
    enforce = StsState(policy=parse_policy(POLICY), policy_id="1")
    testing = StsState(policy=parse_policy(POLICY.replace("enforce", "testing")), policy_id="2")
    with caplog.at_level(logging.WARNING):
        assert sts_downgraded("sts.example", enforce, testing)
        assert sts_downgraded("sts.example", enforce, StsState())
        assert not sts_downgraded("sts.example", testing, enforce)
        assert not sts_downgraded("sts.example", None, testing)
    assert [r.getMessage() for r in caplog.records] == [
        "sts.example: policy downgrade: MTA-STS enforce -> testing",
        "sts.example: policy downgrade: MTA-STS enforce -> no policy",
    ]
