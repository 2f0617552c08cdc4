"""Refresh-ahead: jittered due times, back-off after failures, and one refresher per domain
across servers sharing a cache."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from tests.unit.cache.helpers import FakeClock, FlakyBackend, make_entry
from tlspolicy.cache.backends.memory import MemoryBackend
from tlspolicy.cache.coordination import Coordinator
from tlspolicy.cache.store import PolicyCache
from tlspolicy.dane.result import DaneLevel, DaneResult
from tlspolicy.decision.plan import REFRESH_RETRY_S
from tlspolicy.service.refresh import RefreshAhead


@dataclass
class StubLookups:
    """Answers DANE lookups with the next queued result and stores it like the real one."""

    coordinator: Coordinator
    clock: FakeClock
    results: list[DaneResult] = field(default_factory=list)
    calls: list[tuple[str, float]] = field(default_factory=list)

    def dns_trusted(self) -> bool:
        return True

    def dane(self, domain: str, *, newer_than: float = 0.0) -> asyncio.Task[DaneResult]:
        self.calls.append((domain, newer_than))

        async def run() -> DaneResult:
            result = self.results.pop(0)
            if result.level is not DaneLevel.TEMP:
                entry = make_entry(domain, self.clock.now, dane_ttl=result.ttl)
                await self.coordinator.merge(domain, dane=entry.dane)
            return result

        return asyncio.create_task(run())


def build(
    clock: FakeClock, *, shared: bool = False, store: Any = None
) -> tuple[RefreshAhead, StubLookups]:
    backend = store or MemoryBackend(max_entries=10, clock=clock)
    cache = PolicyCache(
        FlakyBackend(backend, shared=shared), hot_entries=10, hot_ttl=5, clock=clock
    )
    coordinator = Coordinator(cache, clock=clock)
    lookups = StubLookups(coordinator, clock)
    return RefreshAhead(lookups, coordinator, concurrency=2, clock=clock), lookups  # type: ignore[arg-type]


async def test_refresh_failure_backs_off_then_succeeds() -> None:
    clock = FakeClock()
    refresh, lookups = build(clock)
    await refresh.coordinator.cache.open()
    entry = make_entry("a.example", clock.now, dane_ttl=3600)
    await refresh.coordinator.cache.put(entry)
    assert entry.dane is not None
    lookups.results = [
        DaneResult(DaneLevel.TEMP, "servfail", 0),
        DaneResult(DaneLevel.TEMP, "servfail", 0),
        DaneResult(DaneLevel.DANE_ONLY, "ok", 3600),
    ]
    refresh.consider("a.example", entry.dane.checked_at, entry.dane.expires_at)
    queued = refresh._queued["a.example"]
    queued.due = clock.now  # skip the jitter
    await refresh._refresh("a.example")
    assert queued.failures == 1 and queued.due == clock.now + REFRESH_RETRY_S
    clock.advance(REFRESH_RETRY_S)
    await refresh._refresh("a.example")
    assert queued.failures == 2 and queued.due == clock.now + 2 * REFRESH_RETRY_S
    clock.advance(2 * REFRESH_RETRY_S)
    await refresh._refresh("a.example")
    assert "a.example" not in refresh  # done
    assert [newer for _d, newer in lookups.calls] == [entry.dane.checked_at] * 3


async def test_refresh_gives_up_when_the_retry_would_outlive_the_entry() -> None:
    clock = FakeClock()
    refresh, lookups = build(clock)
    await refresh.coordinator.cache.open()
    entry = make_entry("b.example", clock.now, dane_ttl=20)  # expires before a 30 s retry
    await refresh.coordinator.cache.put(entry)
    assert entry.dane is not None
    lookups.results = [DaneResult(DaneLevel.TEMP, "servfail", 0)]
    refresh.consider("b.example", entry.dane.checked_at, entry.dane.expires_at)
    await refresh._refresh("b.example")
    assert "b.example" not in refresh


async def test_refresh_skipped_when_another_server_refreshed_or_holds_it() -> None:
    clock = FakeClock()
    store = MemoryBackend(max_entries=10, clock=clock)
    one, one_lookups = build(clock, shared=True, store=store)
    two, two_lookups = build(clock, shared=True, store=store)
    await one.coordinator.cache.open()
    await two.coordinator.cache.open()
    old = make_entry("c.example", clock.now, dane_ttl=3600)
    await store.put(old)
    assert old.dane is not None
    # Server two holds the refresh lease: server one skips.
    assert await two.coordinator.cache.acquire_lease("refresh:c.example", two.coordinator.owner, 60)
    one.consider("c.example", old.dane.checked_at, old.dane.expires_at)
    await one._refresh("c.example")
    assert one_lookups.calls == [] and "c.example" not in one
    await two.coordinator.cache.release_lease("refresh:c.example", two.coordinator.owner)
    # A newer branch is stored (another server refreshed it): server two skips too.
    clock.advance(10)
    await store.put(make_entry("c.example", clock.now, dane_ttl=3600))
    two.consider("c.example", old.dane.checked_at, old.dane.expires_at)
    await two._refresh("c.example")
    assert two_lookups.calls == [] and "c.example" not in two


async def test_refresh_waits_while_the_resolver_does_not_validate() -> None:
    clock = FakeClock()
    refresh, lookups = build(clock)
    await refresh.coordinator.cache.open()
    entry = make_entry("d.example", clock.now, dane_ttl=3600)
    await refresh.coordinator.cache.put(entry)
    assert entry.dane is not None
    lookups.dns_trusted = lambda: False  # type: ignore[method-assign]
    refresh.consider("d.example", entry.dane.checked_at, entry.dane.expires_at)
    await refresh._refresh("d.example")
    assert lookups.calls == []  # no lookup through a resolver that does not validate
    assert refresh._queued["d.example"].due == clock.now + REFRESH_RETRY_S
