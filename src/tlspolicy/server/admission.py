"""Connection bookkeeping for ``server.max_connections``, sans-IO.

At the cap a newcomer should not be refused: Postfix treats a refused map as a lookup error
and defers the mail, while it reconnects transparently when an idle connection is closed
(``dict_sockmap.c`` retries once on EOF; it also closes idle connections itself after 10 s).
So the table keeps connections in least-recently-active order and names the longest-idle one
that may be closed; the newcomer is refused only when none may.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

C = TypeVar("C")


class ConnectionTable(Generic[C]):
    """Open connections, least recently active first."""

    def __init__(self) -> None:
        self._order: OrderedDict[C, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, conn: object) -> bool:
        return conn in self._order

    def __iter__(self) -> Iterator[C]:
        return iter(list(self._order))

    def add(self, conn: C) -> None:
        self._order[conn] = None

    def discard(self, conn: C) -> None:
        self._order.pop(conn, None)

    def touch(self, conn: C) -> None:
        """``conn`` received a request or sent a reply: it is now the most recently active."""
        try:  # noqa: SIM105 - every request calls this; suppress() costs more than the work
            self._order.move_to_end(conn)
        except KeyError:
            pass  # not admitted (or already forgotten)

    def longest_idle(self, evictable: Callable[[C], bool]) -> C | None:
        """The least recently active connection for which ``evictable`` is true, if any.

        Busy connections were active recently, so they sit near the end: the scan is short
        unless nearly every connection is busy.
        """
        for conn in self._order:
            if evictable(conn):
                return conn
        return None


class Burst:
    """Says which event of a burst to log: the first one after ``quiet`` seconds without any.

    A flood of newcomers at the cap would otherwise log a line each; the metric counts them
    all, the log says once that it is happening.
    """

    def __init__(self, quiet: float = 10.0) -> None:
        self.quiet = quiet
        self._last: float | None = None
        self.count = 0  # events in the current burst

    def note(self, now: float) -> bool:
        """Record one event at ``now``; true when it starts a new burst (log it)."""
        starts = self._last is None or now - self._last >= self.quiet
        self._last = now
        self.count = 1 if starts else self.count + 1
        return starts
