"""DomainLocks: one holder per domain in call order, independent domains, no leftover locks."""

from __future__ import annotations

import asyncio

import pytest

from tlspolicy.cache.domain_locks import DomainLocks


async def test_domain_locks_serialises_one_domain_in_call_order() -> None:
    order = DomainLocks()
    log: list[str] = []

    async def write(name: str, pause: float) -> None:
        async with order.turn("a.example"):
            log.append(f"{name} start")
            await asyncio.sleep(pause)
            log.append(f"{name} end")

    await asyncio.gather(write("first", 0.02), write("second", 0.0), write("third", 0.0))
    assert log == [
        "first start", "first end", "second start", "second end", "third start", "third end"
    ]  # fmt: skip
    assert len(order) == 0


async def test_domain_locks_other_domains_do_not_wait() -> None:
    order = DomainLocks()
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with order.turn("a.example"):
            held.set()
            await release.wait()

    task = asyncio.create_task(hold())
    await held.wait()
    async with asyncio.timeout(1):
        async with order.turn("b.example"):
            assert len(order) == 2
    release.set()
    await task
    assert len(order) == 0


async def test_domain_locks_releases_after_an_error_and_a_cancelled_waiter() -> None:
    order = DomainLocks()
    with pytest.raises(RuntimeError):
        async with order.turn("a.example"):
            raise RuntimeError("backend failed")
    assert len(order) == 0
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with order.turn("a.example"):
            held.set()
            await release.wait()

    async def wait_turn() -> None:
        async with order.turn("a.example"):
            pass

    holder = asyncio.create_task(hold())
    await held.wait()
    waiter = asyncio.create_task(wait_turn())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await holder
    assert len(order) == 0


async def test_domain_locks_a_newcomer_as_the_holder_leaves_waits_for_the_woken_waiter() -> None:
    locks = DomainLocks()
    inside: list[str] = []
    most = 0
    late: list[asyncio.Task[None]] = []

    async def hold(name: str) -> None:
        nonlocal most
        async with locks.turn("a.example"):
            inside.append(name)
            most = max(most, len(inside))
            await asyncio.sleep(0.001)
            inside.remove(name)
        if name == "first":  # "second" is woken but has not run: "third" arrives now
            late.append(asyncio.create_task(hold("third")))

    first = asyncio.create_task(hold("first"))
    await asyncio.sleep(0)
    await asyncio.gather(first, hold("second"))
    await asyncio.gather(*late)
    assert most == 1
    assert len(locks) == 0
