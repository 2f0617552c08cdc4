"""Usage counts waiting for the next flush: counting a use costs no I/O.

Counters only steer eviction and refresh-ahead, so the number of distinct domains counted
between flushes is bounded and further ones go uncounted; losing some is harmless.
"""

from __future__ import annotations

# Distinct domains whose uses are counted between flushes, at least.
MIN_PENDING_DOMAINS = 10_000


class PendingUses:
    """``domain -> (latest use, hits)`` for at most ``limit`` domains.

    Held as ``[latest use, hits]`` lists updated in place: every hot answer counts one
    use, and a new tuple and a ``max()`` per use were a tenth of a hot answer's
    instructions (callgrind: 14.2 K per hot request before, 12.1 K after).
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pending: dict[str, list[float]] = {}

    def note(self, domain: str, now: float) -> None:
        """Count one use of ``domain`` at ``now``."""
        pending = self._pending.get(domain)
        if pending is not None:
            pending[1] += 1
            if now > pending[0]:  # noqa: PLR1730 - max() costs 1,400 instructions here
                pending[0] = now
        elif len(self._pending) < self._limit:
            self._pending[domain] = [now, 1]

    def take(self) -> dict[str, tuple[float, int]]:
        """Everything counted so far; the counts start again from nothing."""
        batch, self._pending = self._pending, {}
        return {domain: (used_at, int(hits)) for domain, (used_at, hits) in batch.items()}

    def restore(self, batch: dict[str, tuple[float, int]]) -> None:
        """Put back a taken batch that could not be sent (past the limit: nothing is lost)."""
        for domain, (used_at, hits) in batch.items():
            pending = self._pending.get(domain)
            if pending is None:
                self._pending[domain] = [used_at, hits]
            else:
                pending[0] = max(pending[0], used_at)
                pending[1] += hits

    def discard(self, domain: str) -> None:
        self._pending.pop(domain, None)

    def clear(self) -> None:
        self._pending.clear()
