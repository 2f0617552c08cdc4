"""PolicyCache: the hot layer, usage batching, outages and coroutine interleaving.

The backends here are the memory backend wrapped in counting / failing / gated fakes, with a
fake clock, so backoff timings and interleavings are exact. The same rules against real
Redis and PostgreSQL are in tests/integration/test_cache_backends.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace

import pytest

from tests.unit.cache.helpers import (
    CountingBackend,
    FakeClock,
    FlakyBackend,
    entry_expiring_at,
    make_entry,
    make_sts_entry,
)
from tlspolicy.cache.backends.memory import MemoryBackend
from tlspolicy.cache.entry import CacheEntry
from tlspolicy.cache.hot import DECODED_ENTRIES
from tlspolicy.cache.store import PolicyCache
from tlspolicy.errors import CacheError

HOT_TTL = 5.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def flaky(clock: FakeClock) -> FlakyBackend:
    return FlakyBackend(MemoryBackend(max_entries=100, clock=clock))


@pytest.fixture
def cache(flaky: FlakyBackend, clock: FakeClock) -> PolicyCache:
    return PolicyCache(flaky, hot_entries=3, hot_ttl=HOT_TTL, clock=clock)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# --- hot layer ---------------------------------------------------------------------------


async def test_policy_cache_hot_hit_needs_no_backend(clock: FakeClock) -> None:
    counting = CountingBackend(MemoryBackend(max_entries=10, clock=clock))
    cache = PolicyCache(counting, hot_entries=10, hot_ttl=HOT_TTL, clock=clock)
    entry = make_entry("a.example", clock.now)
    await cache.put(entry)
    clock.advance(3600)  # the memory store is this process: no staleness bound applies
    assert await cache.get("a.example") == entry
    assert counting.calls["get"] == 0


async def test_policy_cache_remembers_an_absent_domain_for_hot_ttl(
    cache: PolicyCache, flaky: FlakyBackend, clock: FakeClock
) -> None:
    assert await cache.get("a.example") is None
    assert await cache.get("a.example") is None  # a cold lookup's second read: no I/O
    assert flaky.calls["get"] == 1
    other = make_entry("a.example", clock.now, reason="another writer")
    await flaky.inner.put(other)
    clock.advance(HOT_TTL)  # past the bound: read again, and see the other writer's entry
    assert await cache.get("a.example") == other
    assert flaky.calls["get"] == 2
    await cache.delete("a.example")
    assert await cache.get("a.example") is None
    mine = make_entry("a.example", clock.now, reason="mine")
    await cache.put(mine)  # a local write ends the mark at once
    assert await cache.get("a.example") == mine and flaky.calls["get"] == 3


async def test_policy_cache_revalidates_shared_copy_after_hot_ttl(
    cache: PolicyCache, flaky: FlakyBackend, clock: FakeClock
) -> None:
    await cache.put(make_entry("a.example", clock.now, reason="v1"))
    v2 = make_entry("a.example", clock.now, reason="v2")
    await flaky.inner.put(v2)  # another server writes
    clock.advance(HOT_TTL - 0.1)
    assert (await cache.get("a.example")) != v2
    assert flaky.calls["get"] == 0
    clock.advance(0.1)
    # Past hot_ttl: the copy is answered at once (no wait for the backend) ...
    assert (await cache.get("a.example")) != v2
    assert (await cache.get("a.example")) != v2
    await asyncio.sleep(0.01)  # ... while one background read fetches the newer entry
    assert flaky.calls["get"] == 1
    assert await cache.get("a.example") == v2
    assert await cache.get("a.example") == v2  # reloaded copy is hot again
    assert flaky.calls["get"] == 1


async def test_policy_cache_get_fresh_always_reads_shared_backend(
    cache: PolicyCache, flaky: FlakyBackend, clock: FakeClock
) -> None:
    await cache.put(make_entry("a.example", clock.now, reason="v1"))
    v2 = make_entry("a.example", clock.now, reason="v2")
    await flaky.inner.put(v2)
    assert await cache.get_fresh("a.example") == v2
    assert flaky.calls["get"] == 1


async def test_policy_cache_drops_copy_deleted_elsewhere(
    cache: PolicyCache, flaky: FlakyBackend, clock: FakeClock
) -> None:
    await cache.put(make_entry("a.example", clock.now))
    await flaky.inner.purge()  # an admin purge on another server
    clock.advance(HOT_TTL)
    assert await cache.get("a.example") is not None  # answered now, re-read in the background
    await asyncio.sleep(0.01)
    assert await cache.get("a.example") is None


async def test_policy_cache_expired_hot_copy_is_not_returned(
    cache: PolicyCache, clock: FakeClock
) -> None:
    await cache.put(entry_expiring_at("a.example", clock.now + 1))
    assert await cache.get("a.example") is not None
    clock.advance(2)
    assert await cache.get("a.example") is None


async def test_policy_cache_hot_layer_is_a_bounded_lru(clock: FakeClock) -> None:
    counting = CountingBackend(MemoryBackend(max_entries=100, clock=clock))
    cache = PolicyCache(counting, hot_entries=2, hot_ttl=HOT_TTL, clock=clock)
    for name in ("a", "b"):
        await cache.put(make_entry(f"{name}.example", clock.now))
    await cache.get("a.example")  # a is now more recent than b
    await cache.put(make_entry("c.example", clock.now))  # evicts b from the hot layer
    for name in ("a", "c"):
        await cache.get(f"{name}.example")
    assert counting.calls["get"] == 0
    assert await cache.get("b.example") == make_entry("b.example", clock.now)
    assert counting.calls["get"] == 1  # b came from the backend


async def test_policy_cache_hot_layer_beyond_its_decoded_copies_needs_no_backend(
    clock: FakeClock,
) -> None:
    """More hot entries than ``DECODED_ENTRIES``: the older ones come back from their packed
    form, equal, with their counters, and still without a backend read."""
    counting = CountingBackend(MemoryBackend(max_entries=1000, clock=clock))
    cache = PolicyCache(counting, hot_entries=1000, hot_ttl=HOT_TTL, clock=clock)
    entries = [make_sts_entry(f"d{i}.example", clock.now) for i in range(DECODED_ENTRIES + 50)]
    for entry in entries:
        await cache.put(entry)
    cache.note_use("d0.example", clock.now + 1)
    await cache.flush()
    for entry in reversed(entries):
        assert await cache.get(entry.domain) == (
            replace(entry, used_at=clock.now + 1, hits=1) if entry.domain == "d0.example"
            else entry
        )  # fmt: skip
    assert counting.calls["get"] == 0


# --- usage counters ----------------------------------------------------------------------


async def test_policy_cache_note_use_is_batched_into_one_touch(
    cache: PolicyCache, flaky: FlakyBackend, clock: FakeClock
) -> None:
    await cache.put(make_entry("a.example", clock.now, hits=1))
    await cache.put(make_entry("b.example", clock.now))
    for _ in range(5):
        cache.note_use("a.example", clock.now + 2)
    cache.note_use("b.example", clock.now + 1)
    assert flaky.calls["touch"] == 0
    await cache.flush()
    await cache.flush()  # nothing pending: no call
    assert flaky.calls["touch"] == 1
    stored = await flaky.inner.get("a.example")
    assert stored is not None and (stored.hits, stored.used_at) == (6, clock.now + 2)
    hot = await cache.get("a.example")
    assert hot is not None and hot.hits == 6


async def test_policy_cache_failed_flush_keeps_counts_for_later(
    cache: PolicyCache, flaky: FlakyBackend, clock: FakeClock
) -> None:
    await cache.put(make_entry("a.example", clock.now))
    cache.note_use("a.example", clock.now)
    flaky.down = True
    await cache.flush()
    cache.note_use("a.example", clock.now)
    flaky.down = False
    clock.advance(1.0)
    await cache.flush()
    stored = await flaky.inner.get("a.example")
    assert stored is not None and stored.hits == 2  # each use counted exactly once


async def test_policy_cache_run_maintenance_flushes_periodically(
    cache: PolicyCache, flaky: FlakyBackend, clock: FakeClock
) -> None:
    await cache.put(make_entry("a.example", clock.now))
    cache.note_use("a.example", clock.now)
    task = asyncio.create_task(cache.run_maintenance(interval=0.01))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if flaky.calls["touch"]:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert flaky.calls["touch"] == 1


async def test_policy_cache_aclose_flushes_then_closes(
    cache: PolicyCache, flaky: FlakyBackend, clock: FakeClock
) -> None:
    await cache.put(make_entry("a.example", clock.now))
    cache.note_use("a.example", clock.now + 1)
    await cache.aclose()
    assert (flaky.calls["touch"], flaky.calls["aclose"]) == (1, 1)
    stored = await flaky.inner.get("a.example")
    assert stored is not None and stored.hits == 1


# --- outages -----------------------------------------------------------------------------


async def test_policy_cache_outage_logs_one_warning_and_keeps_answering(
    cache: PolicyCache, flaky: FlakyBackend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    kept = make_entry("a.example", clock.now)
    await cache.put(kept)
    flaky.down = True
    clock.advance(HOT_TTL)
    with caplog.at_level(logging.INFO, logger="tlspolicy.cache"):
        for _ in range(50):
            assert await cache.get("a.example") == kept
            assert await cache.get("missing.example") is None
            await cache.put(make_entry("b.example", clock.now))
            assert await cache.acquire_lease("lookup:dane:x", "me", 10.0) is True
            await cache.release_lease("lookup:dane:x", "me")
    assert _warnings(caplog) == [
        "cache backend flaky unavailable: flaky: connection refused; "
        "answering from memory and live lookups"
    ]
    assert not cache.healthy and cache.outage_reason == "flaky: connection refused"
    assert flaky.calls["get"] == 1  # only the call that found the outage


async def test_policy_cache_probes_with_exponential_backoff(
    cache: PolicyCache, flaky: FlakyBackend, clock: FakeClock
) -> None:
    start = clock.now
    flaky.down = True
    await cache.put(make_entry("a.example", clock.now))  # fails: outage starts
    probes: list[float] = []
    while clock.now - start < 250:
        clock.advance(0.5)
        before = flaky.calls["open"]
        await cache.get("missing.example")
        if flaky.calls["open"] > before:
            probes.append(clock.now - start)
    assert probes == [1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 123.0, 183.0, 243.0]


async def test_policy_cache_recovers_and_writes_back_outage_entries(
    cache: PolicyCache, flaky: FlakyBackend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    flaky.down = True
    during = make_entry("b.example", clock.now)
    with caplog.at_level(logging.INFO, logger="tlspolicy.cache"):
        await cache.put(during)
        flaky.down = False
        await cache.flush()  # before the backoff: not even a probe
        assert flaky.calls["open"] == 0
        clock.advance(1.0)
        await cache.flush()
    assert await flaky.inner.get("b.example") == during
    assert cache.healthy and cache.outage_reason is None
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["cache backend flaky available again after 1 s"]
    clock.advance(HOT_TTL)
    assert await cache.get("b.example") == during  # clean now: re-read like any copy


async def test_policy_cache_flapping_backend_backs_off_further(
    cache: PolicyCache, flaky: FlakyBackend, clock: FakeClock
) -> None:
    flaky.down = True
    await cache.put(make_entry("a.example", clock.now))  # outage 1, backoff 1 s
    flaky.down = False
    clock.advance(1.0)
    await cache.flush()  # recovered
    flaky.down = True
    await cache.put(make_entry("a.example", clock.now))  # outage 2 soon after: backoff 2 s
    flaky.down = False
    clock.advance(1.0)
    await cache.flush()
    assert not cache.healthy
    clock.advance(1.0)
    await cache.flush()
    assert cache.healthy


async def test_policy_cache_admin_calls_raise_during_outage(
    cache: PolicyCache, flaky: FlakyBackend, clock: FakeClock
) -> None:
    await cache.put(make_entry("a.example", clock.now))
    flaky.down = True
    with pytest.raises(CacheError, match="connection refused"):
        await cache.count()
    for call in (cache.delete("a.example"), cache.purge(), cache.entries(), cache.count()):
        with pytest.raises(CacheError, match="unavailable"):
            await call
    assert await cache.get("a.example") is None  # the hot copy went anyway


async def test_policy_cache_open_degrades_for_shared_backend(
    cache: PolicyCache, flaky: FlakyBackend, caplog: pytest.LogCaptureFixture
) -> None:
    flaky.down = True
    with caplog.at_level(logging.WARNING, logger="tlspolicy.cache"):
        await cache.open()
    assert not cache.healthy and len(_warnings(caplog)) == 1


async def test_policy_cache_open_raises_for_local_backend(clock: FakeClock) -> None:
    local = FlakyBackend(MemoryBackend(max_entries=10, clock=clock), shared=False)
    local.down = True
    with pytest.raises(CacheError):
        await PolicyCache(local, hot_entries=10, hot_ttl=HOT_TTL, clock=clock).open()


# --- interleaving ------------------------------------------------------------------------


class GatedBackend(FlakyBackend):
    """Reads return what they saw *before* waiting on ``read_gate``; puts of entries whose
    reason is ``"slow"`` wait on ``write_gate`` before writing."""

    def __init__(self, inner: MemoryBackend) -> None:
        super().__init__(inner)
        self.read_gate = asyncio.Event()
        self.write_gate = asyncio.Event()
        self.reading = asyncio.Event()

    async def get(self, domain: str) -> CacheEntry | None:
        seen = await self.inner.get(domain)
        self.reading.set()
        await self.read_gate.wait()
        return seen

    async def put(self, entry: CacheEntry) -> None:
        if entry.dane is not None and entry.dane.result.reason == "slow":
            await self.write_gate.wait()
        await self.inner.put(entry)

    async def touch(self, usage: Mapping[str, tuple[float, int]]) -> None:
        await self.inner.touch(usage)


@pytest.fixture
def gated(clock: FakeClock) -> GatedBackend:
    return GatedBackend(MemoryBackend(max_entries=100, clock=clock))


@pytest.mark.parametrize("change", ["put", "delete", "purge"])
async def test_policy_cache_read_overtaken_by_local_write_is_not_installed(
    gated: GatedBackend, clock: FakeClock, change: str
) -> None:
    cache = PolicyCache(gated, hot_entries=10, hot_ttl=HOT_TTL, clock=clock)
    old, new = make_entry("a.example", clock.now, reason="old"), make_entry("a.example", clock.now)
    await gated.inner.put(old)
    read = asyncio.create_task(cache.get("a.example"))
    await gated.reading.wait()  # the read has seen "old" and is still in flight
    gated.read_gate.set()
    if change == "put":
        await cache.put(new)
    elif change == "delete":
        await cache.delete("a.example")
    else:
        await cache.purge()
    expected = new if change == "put" else None
    assert await read == expected
    assert await cache.get("a.example") == expected


async def test_policy_cache_backend_writes_keep_call_order(
    gated: GatedBackend, clock: FakeClock
) -> None:
    cache = PolicyCache(gated, hot_entries=10, hot_ttl=HOT_TTL, clock=clock)
    first = make_entry("a.example", clock.now, reason="slow")
    second = make_entry("a.example", clock.now, reason="second")
    slow = asyncio.create_task(cache.put(first))
    await asyncio.sleep(0)  # first put is now waiting inside the backend
    fast = asyncio.create_task(cache.put(second))
    await asyncio.sleep(0)
    gated.write_gate.set()
    await asyncio.gather(slow, fast)
    assert await gated.inner.get("a.example") == second
    assert await cache.get("a.example") == second
