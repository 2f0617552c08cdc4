"""The shared-cache protocol: merge keeps the other branch, run_once runs a lookup once
across servers sharing one store, exclusive lets one server do background work."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from tests.unit.cache.helpers import FakeClock, FlakyBackend, make_entry, make_sts_entry
from tlspolicy.cache.backends.memory import MemoryBackend
from tlspolicy.cache.coordination import Coordinator
from tlspolicy.cache.entry import CacheEntry
from tlspolicy.cache.store import PolicyCache


def two_servers(clock: FakeClock) -> tuple[Coordinator, Coordinator, MemoryBackend]:
    """Two servers (each its own PolicyCache and lease owner) on one shared store."""
    store = MemoryBackend(max_entries=100, clock=clock)
    servers = [
        Coordinator(
            PolicyCache(FlakyBackend(store), hot_entries=10, hot_ttl=5, clock=clock),
            owner=f"server{n}",
            wait=2.0,
            clock=clock,
        )
        for n in range(2)
    ]
    return servers[0], servers[1], store


async def test_merge_keeps_the_branch_not_given() -> None:
    clock = FakeClock()
    one, _, store = two_servers(clock)
    await one.cache.open()
    both = make_sts_entry("a.example", clock.now)
    await store.put(both)
    new_dane = replace(make_entry("a.example", clock.now + 1, dane_ttl=60).dane)
    merged = await one.merge("a.example", dane=new_dane)
    assert merged.sts == both.sts and merged.dane == new_dane
    stored = await store.get("a.example")
    assert stored is not None and stored.sts == both.sts and stored.dane == new_dane


async def test_merge_starts_an_entry_when_none_is_stored() -> None:
    clock = FakeClock()
    one, _, store = two_servers(clock)
    await one.cache.open()
    sts = make_sts_entry("b.example", clock.now).sts
    merged = await one.merge("b.example", sts=sts)
    assert merged == CacheEntry("b.example", sts=sts, used_at=clock.now)
    assert await store.get("b.example") == merged


async def test_run_once_second_server_takes_the_first_servers_result() -> None:
    clock = FakeClock()
    one, two, _ = two_servers(clock)
    await one.cache.open()
    await two.cache.open()
    calls: list[str] = []
    release = asyncio.Event()

    async def lookup(owner: Coordinator, name: str) -> str:
        calls.append(name)
        await release.wait()
        await owner.merge("c.example", dane=make_entry("c.example", clock.now).dane)
        return name

    def done(entry: CacheEntry | None) -> str | None:
        return "stored" if entry is not None and entry.dane is not None else None

    first = asyncio.create_task(
        one.run_once("lookup:dane:c", "c.example", lambda: lookup(one, "one"), done)
    )
    await asyncio.sleep(0.01)  # server one holds the lease
    second = asyncio.create_task(
        two.run_once("lookup:dane:c", "c.example", lambda: lookup(two, "two"), done)
    )
    await asyncio.sleep(0.05)
    release.set()
    assert await first == "one"
    assert await second == "stored"  # read from the store, not looked up again
    assert calls == ["one"]


async def test_run_once_after_lease_checks_store_again() -> None:
    clock = FakeClock()
    one, _, store = two_servers(clock)
    await one.cache.open()
    await store.put(make_entry("d.example", clock.now))  # another server just finished

    async def lookup() -> str:
        raise AssertionError("must not look up again")

    def done(entry: CacheEntry | None) -> str | None:
        return "stored" if entry is not None else None

    assert await one.run_once("lookup:dane:d", "d.example", lookup, done) == "stored"


async def test_run_once_gives_up_waiting_and_looks_up_itself() -> None:
    clock = FakeClock()
    one, two, _ = two_servers(clock)
    two.wait = 0.1
    await one.cache.open()
    await two.cache.open()
    assert await one.cache.acquire_lease("lookup:dane:e", one.owner, 60)  # a stuck server

    async def lookup() -> str:
        return "mine"

    assert await two.run_once("lookup:dane:e", "e.example", lookup, lambda _e: None) == "mine"


async def test_run_once_without_shared_cache_just_runs() -> None:
    clock = FakeClock()
    local = Coordinator(
        PolicyCache(
            MemoryBackend(max_entries=10, clock=clock), hot_entries=5, hot_ttl=5, clock=clock
        )
    )
    await local.cache.open()

    async def lookup() -> str:
        return "ran"

    assert await local.run_once("k", "f.example", lookup, lambda _e: "never") == "ran"


async def test_exclusive_grants_one_server() -> None:
    clock = FakeClock()
    one, two, _ = two_servers(clock)
    await one.cache.open()
    await two.cache.open()
    async with one.exclusive("refresh:g", 60) as first, two.exclusive("refresh:g", 60) as second:
        assert (first, second) == (True, False)
    async with two.exclusive("refresh:g", 60) as again:
        assert again  # released
