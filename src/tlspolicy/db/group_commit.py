"""Group commit: the writes of one moment reach the disk in one transaction.

Why: a cold lookup stored each result with a transaction of its own: a hand-off to the
SQLite thread, BEGIN, the row, COMMIT and its WAL pages, about a third of a cold DANE
lookup's CPU (``bench/coldcpu.py --backend memory`` shows the rest). At 16 lookups at a
time most writes overlap. ``submit`` queues an item and waits for the batch it joined; one
writer task writes one batch at a time, and while it writes the next batch fills, as
databases do with group commit. Every waiter gets its batch's outcome, its error included,
so a caller still learns that its write failed. Writes keep their order: batches are
written in the order they were opened, items in the order they were submitted.

Reads of a cold moment come in bursts too (a finished batch of writes lets several answers
go, and their clients send the next names at once), so the SQLite backend batches them the
same way: each waiter gets the batch's result, the entries found for every domain in it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class _Batch(Generic[T, R]):
    done: asyncio.Future[R]
    items: list[T] = field(default_factory=list)


class GroupCommit(Generic[T, R]):
    """Batches of at most ``max_batch`` items for ``write``, whose result each waiter of the
    batch gets; ``closed`` is the error the waiters of unwritten batches get when the writer
    is cancelled (at shutdown)."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[R]],
        *,
        max_batch: int,
        closed: Callable[[], Exception],
    ) -> None:
        self._write = write
        self._max_batch = max(1, max_batch)
        self._closed = closed
        self._queue: deque[_Batch[T, R]] = deque()
        self._filling: _Batch[T, R] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # written, for tests and the benchmark
        self.items = 0

    async def submit(self, item: T) -> R:
        """Write ``item`` with the others of its batch: what the write returned, or raises
        what it raised."""
        batch = self._filling
        if batch is None or len(batch.items) >= self._max_batch:
            batch = _Batch(asyncio.get_running_loop().create_future())
            batch.done.add_done_callback(_retrieve)
            self._queue.append(batch)
            self._filling = batch
            if self._writer is None:
                self._writer = asyncio.create_task(self._drain(), name="cache-group-commit")
        batch.items.append(item)
        return await asyncio.shield(batch.done)

    async def idle(self) -> None:
        """Return once everything submitted so far is written (or failed)."""
        while self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)

    async def _drain(self) -> None:
        batch: _Batch[T, R] | None = None
        try:
            while self._queue:
                batch = self._queue.popleft()
                if batch is self._filling:
                    self._filling = None
                try:
                    result = await self._write(batch.items)
                except Exception as exc:  # the backend's error type: each waiter sees it
                    batch.done.set_exception(exc)
                else:
                    batch.done.set_result(result)
                    self.batches += 1
                    self.items += len(batch.items)
                batch = None
        except asyncio.CancelledError:
            for left in [*([batch] if batch is not None else []), *self._queue]:
                if not left.done.done():
                    left.done.set_exception(self._closed())
            self._queue.clear()
            self._filling = None
            raise
        finally:
            self._writer = None


def _retrieve(done: asyncio.Future[Any]) -> None:
    """Mark a failure as seen: when every waiter gave up, nobody else will look at it."""
    if not done.cancelled():
        done.exception()
