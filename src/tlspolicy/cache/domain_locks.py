"""Per-domain FIFO locks: one holder at a time, in call order, none left when unused.

Two users: ``PolicyCache`` sends a domain's backend writes one at a time and in call order
(else two ``put`` calls could reach the backend in either order and the older entry end
up stored), and ``Coordinator.locked`` serialises a domain's read-modify-write (else a
branch's result could be lost).

A domain's lock exists while someone holds or awaits it: the count of its users, not
``Lock.locked()``, says when it may go. Right after a release the lock reads unlocked
while the woken waiter has not run yet; dropping it then would let a newcomer make a
second lock and hold it together with that waiter. ``asyncio.Lock`` wakes waiters first
come, first served. A class, not ``contextlib.asynccontextmanager``: a cold lookup takes
five turns, and a generator-based context manager costs three times as much per turn.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class DomainLocks:
    """Per-domain FIFO locks, created on demand and dropped when the last user leaves."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # domain -> (lock, users)

    def turn(self, domain: str) -> Turn:
        """``async with locks.turn(domain):`` waits for the earlier users of ``domain``,
        then holds its lock for the block."""
        return Turn(self, domain)

    def __len__(self) -> int:
        """Domains with a user holding or awaiting the lock."""
        return len(self._locks)

    def _join(self, domain: str) -> asyncio.Lock:
        lock, users = self._locks.get(domain) or (asyncio.Lock(), 0)
        self._locks[domain] = (lock, users + 1)
        return lock

    def _leave(self, domain: str) -> None:
        lock, users = self._locks[domain]
        if users > 1:
            self._locks[domain] = (lock, users - 1)
        else:
            del self._locks[domain]


class Turn:
    """One user's turn at a domain's lock (``DomainLocks.turn``)."""

    __slots__ = ("_domain", "_lock", "_locks")

    def __init__(self, locks: DomainLocks, domain: str) -> None:
        self._locks = locks
        self._domain = domain
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> None:
        lock = self._locks._join(self._domain)
        try:
            await lock.acquire()
        except BaseException:  # cancelled while waiting: no longer a user
            self._locks._leave(self._domain)
            raise
        self._lock = lock

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._lock is not None
        self._lock.release()
        self._lock = None
        self._locks._leave(self._domain)
