"""Requests per source per minute for the inbound HTTPS endpoint, pure (``now`` passed in).

A fixed one-minute window per source address: simple, and a sender that posts one report
a day per domain never comes near it. The table of sources is bounded
(``MAX_SOURCES``): when it is full, windows that ended are dropped first; sources beyond
that share one window (``OVERFLOW``), so a flood from many addresses is limited as one.
"""

from __future__ import annotations

WINDOW_S = 60.0
MAX_SOURCES = 10_000
OVERFLOW = "(too many sources)"


class RateLimiter:
    def __init__(self, per_minute: int, *, max_sources: int = MAX_SOURCES) -> None:
        self.per_minute = per_minute
        self.max_sources = max_sources
        self._windows: dict[str, tuple[float, int]] = {}

    def allow(self, source: str, now: float) -> bool:
        """Count one request from ``source``; False when it is over the limit."""
        if source not in self._windows and len(self._windows) >= self.max_sources:
            self._windows = {s: w for s, w in self._windows.items() if now - w[0] < WINDOW_S}
            if len(self._windows) >= self.max_sources:
                source = OVERFLOW
        start, count = self._windows.get(source, (now, 0))
        if now - start >= WINDOW_S:
            start, count = now, 0
        if count >= self.per_minute:
            self._windows[source] = (start, count)
            return False
        self._windows[source] = (start, count + 1)
        return True

    @property
    def sources(self) -> int:
        return len(self._windows)
