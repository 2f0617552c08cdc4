"""The batching writer in front of a store, with an in-memory store."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

from tests.unit.tlsrpt.helpers import NO_POLICY_OK, datagram
from tlspolicy.config.tlsrpt import default_store_path
from tlspolicy.errors import ReportStoreError
from tlspolicy.tlsrpt.aggregate import Batch, GroupCounts
from tlspolicy.tlsrpt.datagram import parse_datagram
from tlspolicy.tlsrpt.store import BatchWriter, Delivery, group_hash

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class MemoryStore:
    """Enough of ``ReportStore`` for the writer: ``add`` records, or fails when told to."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.fail = False

    async def open(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def add(self, batch: Batch) -> None:
        if self.fail:
            raise ReportStoreError("down")
        self.batches.append(batch)

    async def day_counts(self, day: date, domain: str | None = None) -> list[GroupCounts]:
        return []

    async def days(self, since: date) -> list[date]:
        return []

    async def deliveries(self, day: date, domain: str | None = None) -> list[Delivery]:
        return []

    async def claim(self, *args: object, **kw: object) -> Delivery | None:
        return None

    async def finish(self, *args: object, **kw: object) -> None:
        return None

    async def purge_before(self, day: date) -> int:
        return 0


def successful(store: MemoryStore) -> int:
    return sum(c.successful for b in store.batches for c in b.sessions.values())


async def test_store_writer_flushes_and_keeps_data_on_failure() -> None:
    store = MemoryStore()
    writer = BatchWriter(store, clock=lambda: NOON)
    dg = parse_datagram(datagram(NO_POLICY_OK))
    writer.add(dg)
    store.fail = True
    assert not await writer.flush()
    writer.add(dg)
    assert writer.pending == 2
    store.fail = False
    assert await writer.flush()
    assert successful(store) == 2 and writer.written == 2 and writer.pending == 0
    assert await writer.flush()  # nothing pending: no write
    assert len(store.batches) == 1


async def test_store_writer_wakes_at_max_datagrams() -> None:
    store = MemoryStore()
    writer = BatchWriter(store, interval=3600, max_datagrams=5, clock=lambda: NOON)
    task = asyncio.create_task(writer.run())
    dg = parse_datagram(datagram(NO_POLICY_OK))
    for _ in range(5):
        writer.add(dg)
    for _ in range(1000):
        if store.batches:
            break
        await asyncio.sleep(0)
    task.cancel()
    assert successful(store) == 5


def test_store_default_path_and_hash() -> None:
    assert (
        default_store_path("/var/lib/tlspolicy/cache.sqlite3")
        == "/var/lib/tlspolicy/tlsrpt.sqlite3"
    )
    batch = Batch()
    batch.add(parse_datagram(datagram(NO_POLICY_OK)), NOON)
    (key,) = batch.sessions
    assert len(group_hash(key)) == 64
