"""SharedAnswers: one query per (name, type) in flight or recently answered."""

from __future__ import annotations

import asyncio

import pytest

from tlspolicy.dnsstub.data import DnsAnswer
from tlspolicy.dnsstub.share import SharedAnswers
from tlspolicy.dnsstub.trace import Trace, recording
from tlspolicy.errors import DnsError


def answer(name: str, rdtype: str, ttl: int = 300) -> DnsAnswer:
    return DnsAnswer(
        qname=name, rdtype=rdtype, rcode="NOERROR", secure=True, cnames=(),
        canonical_name=name, records=(), ttl=ttl,
    )  # fmt: skip


class Inner:
    def __init__(self, ttl: int = 300, fail: bool = False) -> None:
        self.asked: list[tuple[str, str]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.ttl = ttl
        self.fail = fail
        self.closed = False

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        self.asked.append((name, rdtype))
        await self.release.wait()
        if self.fail:
            raise DnsError("timeout", "no answer", name=name, rdtype=rdtype)
        return answer(name, rdtype, self.ttl)

    async def aclose(self) -> None:
        self.closed = True


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_askers_share_one_query() -> None:
    inner = Inner()
    inner.release.clear()
    shared = SharedAnswers(inner)
    asks = [asyncio.create_task(shared.query("mx1.example", "A")) for _ in range(5)]
    await asyncio.sleep(0)
    inner.release.set()
    results = await asyncio.gather(*asks)
    assert inner.asked == [("mx1.example", "A")]
    assert all(r is results[0] for r in results)
    assert (shared.asked, shared.shared) == (1, 4)


async def test_answer_is_reused_for_min_of_ttl_and_reuse_window() -> None:
    clock = Clock()
    inner = Inner(ttl=2)
    shared = SharedAnswers(inner, reuse_s=5.0, clock=clock)
    await shared.query("mx1.example", "A")
    await shared.query("MX1.example.", "A")  # the same question
    clock.now += 1.9
    await shared.query("mx1.example", "A")
    assert len(inner.asked) == 1
    clock.now += 0.2  # past the record's TTL of 2 s
    await shared.query("mx1.example", "A")
    assert len(inner.asked) == 2


async def test_reuse_never_exceeds_the_window_and_other_types_are_asked() -> None:
    clock = Clock()
    inner = Inner(ttl=3600)
    shared = SharedAnswers(inner, reuse_s=5.0, clock=clock)
    await shared.query("mx1.example", "A")
    await shared.query("mx1.example", "AAAA")
    clock.now += 5.1
    await shared.query("mx1.example", "A")
    assert inner.asked == [("mx1.example", "A"), ("mx1.example", "AAAA"), ("mx1.example", "A")]


async def test_zero_ttl_is_not_kept() -> None:
    inner = Inner(ttl=0)
    shared = SharedAnswers(inner)
    await shared.query("x.example", "TXT")
    await shared.query("x.example", "TXT")
    assert len(inner.asked) == 2


async def test_failures_reach_every_waiter_and_are_not_kept() -> None:
    inner = Inner(fail=True)
    inner.release.clear()
    shared = SharedAnswers(inner)
    asks = [asyncio.create_task(shared.query("x.example", "MX")) for _ in range(3)]
    await asyncio.sleep(0)
    inner.release.set()
    results = await asyncio.gather(*asks, return_exceptions=True)
    assert all(isinstance(r, DnsError) and r.kind == "timeout" for r in results)
    inner.fail = False
    assert (await shared.query("x.example", "MX")).rcode == "NOERROR"
    assert len(inner.asked) == 2


async def test_a_cancelled_asker_does_not_fail_the_others() -> None:
    inner = Inner()
    inner.release.clear()
    shared = SharedAnswers(inner)
    first = asyncio.create_task(shared.query("x.example", "A"))
    second = asyncio.create_task(shared.query("x.example", "A"))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    inner.release.set()
    assert (await second).qname == "x.example"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_cancelled_first_asker_alone_leaves_no_flight_behind() -> None:
    inner = Inner()
    inner.release.clear()
    shared = SharedAnswers(inner)
    first = asyncio.create_task(shared.query("x.example", "A"))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    inner.release.set()
    assert (await shared.query("x.example", "A")).qname == "x.example"
    assert inner.asked == [("x.example", "A"), ("x.example", "A")]  # asked anew


async def test_the_question_asked_again_for_sharers_can_fail_them_and_share_again() -> None:
    inner = Inner(fail=True)
    inner.release.clear()
    shared = SharedAnswers(inner)
    first = asyncio.create_task(shared.query("x.example", "MX"))
    second = asyncio.create_task(shared.query("x.example", "MX"))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    third = asyncio.create_task(shared.query("x.example", "MX"))  # joins the re-asked one
    await asyncio.sleep(0)
    inner.release.set()
    results = await asyncio.gather(second, third, return_exceptions=True)
    assert all(isinstance(r, DnsError) and r.kind == "timeout" for r in results)
    assert len(inner.asked) == 2  # the cancelled first asker's, and once more for both
    assert (shared.asked, shared.shared) == (2, 2)


async def test_oldest_answers_are_dropped_past_the_bound() -> None:
    inner = Inner()
    shared = SharedAnswers(inner, max_answers=2)
    for name in ("a.example", "b.example", "c.example", "a.example"):
        await shared.query(name, "A")
    assert [n for n, _ in inner.asked] == ["a.example", "b.example", "c.example", "a.example"]


async def test_while_tracing_every_question_is_asked() -> None:
    inner = Inner()
    shared = SharedAnswers(inner)
    await shared.query("x.example", "A")
    with recording(Trace()):
        await shared.query("x.example", "A")
    assert len(inner.asked) == 2


async def test_aclose_closes_the_inner_client() -> None:
    inner = Inner()
    shared = SharedAnswers(inner)
    await shared.aclose()
    assert inner.closed
