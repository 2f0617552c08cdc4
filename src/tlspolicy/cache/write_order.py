"""Backend writes for one domain, one at a time and in call order.

Without it two ``put`` calls for one domain could reach the backend in either order, and
the older entry could end up stored. ``asyncio.Lock`` wakes waiters first come, first
served; a domain's lock exists only while someone holds or awaits it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class WriteOrder:
    """Per-domain FIFO locks, created on demand and dropped when the last user leaves."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # domain -> (lock, users)

    @contextlib.asynccontextmanager
    async def turn(self, domain: str) -> AsyncIterator[None]:
        """Wait for the earlier writers of ``domain``, then hold the lock for the block."""
        lock, users = self._locks.get(domain, (asyncio.Lock(), 0))
        self._locks[domain] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[domain]
            if users > 1:
                self._locks[domain] = (lock, users - 1)
            else:
                del self._locks[domain]

    def __len__(self) -> int:
        """Domains with a writer holding or awaiting the lock."""
        return len(self._locks)
