"""A ticker on the event loop that records how late it wakes: the loop's stalls.

Used by the hostile-peer tests (issue 27): whatever a peer sends, no callback may keep the
loop from other work for long. The bound they assert, ``MAX_LOOP_LAG_S``, is the one
timing threshold the tests allow themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

MAX_LOOP_LAG_S = 0.050
TICK_S = 0.001


class LoopLag:
    """The largest lateness of a ``TICK_S`` sleep while the ``measure`` block ran."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.ticks = 0
        self.since = asyncio.get_running_loop().time()  # when the pending tick began

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.since = loop.time()
            await asyncio.sleep(TICK_S)
            self.worst = max(self.worst, loop.time() - self.since - TICK_S)
            self.ticks += 1

    def close(self) -> None:
        """Count the pending tick too: a stall just before the block ended has not woken
        the ticker yet."""
        now = asyncio.get_running_loop().time()
        self.worst = max(self.worst, now - self.since - TICK_S)


@contextlib.asynccontextmanager
async def measure() -> AsyncIterator[LoopLag]:
    lag = LoopLag()
    task = asyncio.create_task(lag._tick())
    await asyncio.sleep(0)  # the ticker is running before the block starts
    try:
        yield lag
    finally:
        lag.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
