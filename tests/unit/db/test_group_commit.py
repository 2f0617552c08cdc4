"""Group commit: batches per moment, in order, each waiter with its batch's outcome."""

from __future__ import annotations

import asyncio

import pytest

from tlspolicy.db.group_commit import GroupCommit
from tlspolicy.errors import CacheError


class Disk:
    """A write that takes a while (until released) and records its batches."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_on: set[int] = set()

    async def write(self, items: list[int]) -> None:
        await self.gate.wait()
        self.batches.append(list(items))
        if self.fail_on & set(items):
            raise CacheError("disk full")


def commits(disk: Disk, max_batch: int = 100) -> GroupCommit[int, None]:
    return GroupCommit(disk.write, max_batch=max_batch, closed=lambda: CacheError("closed"))


async def test_writes_of_one_moment_share_a_batch_and_the_next_fills_meanwhile() -> None:
    disk = Disk()
    group = commits(disk)
    disk.gate.clear()
    first = [asyncio.create_task(group.submit(i)) for i in range(3)]
    await asyncio.sleep(0)  # the writer took batch [0, 1, 2] and waits for the disk
    second = [asyncio.create_task(group.submit(i)) for i in range(3, 6)]
    await asyncio.sleep(0)
    disk.gate.set()
    await asyncio.gather(*first, *second)
    assert disk.batches == [[0, 1, 2], [3, 4, 5]]
    assert (group.batches, group.items) == (2, 6)


async def test_batches_are_bounded() -> None:
    disk = Disk()
    group = commits(disk, max_batch=2)
    await asyncio.gather(*(group.submit(i) for i in range(5)))
    assert disk.batches == [[0, 1], [2, 3], [4]]


async def test_a_failed_write_fails_every_waiter_of_its_batch_only() -> None:
    disk = Disk()
    disk.fail_on = {1}
    group = commits(disk, max_batch=2)
    results = await asyncio.gather(*(group.submit(i) for i in range(4)), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["CacheError"] * 2 + ["NoneType"] * 2


async def test_a_waiter_that_gives_up_does_not_stop_the_write() -> None:
    disk = Disk()
    group = commits(disk)
    disk.gate.clear()
    waiter = asyncio.create_task(group.submit(7))
    await asyncio.sleep(0)
    waiter.cancel()
    disk.gate.set()
    await group.idle()
    assert disk.batches == [[7]]


async def test_a_cancelled_writer_fails_what_it_did_not_write() -> None:
    disk = Disk()
    group = commits(disk)
    disk.gate.clear()
    waiting = [asyncio.create_task(group.submit(i)) for i in range(2)]
    await asyncio.sleep(0)
    later = asyncio.create_task(group.submit(9))
    await asyncio.sleep(0)
    assert group._writer is not None
    group._writer.cancel()
    for task in [*waiting, later]:
        with pytest.raises(CacheError, match="closed"):
            await task
    await group.idle()
    assert disk.batches == []
