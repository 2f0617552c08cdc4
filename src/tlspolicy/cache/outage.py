"""A backend outage: one WARNING when it starts, reconnect probes with backoff, one INFO
line when it ends.

``PolicyCache`` asks ``ready()`` before each backend call and reports a failed call with
``fail(exc)``. While the backend is out, ``ready()`` answers False at once except when a
probe (``backend.open()``) is due; probes back off from ``PROBE_BACKOFF_MIN_S`` doubling
to ``PROBE_BACKOFF_MAX_S``. A backend that fails again soon after coming back keeps its
longer backoff, so a flapping store logs a pair of lines per backoff period, not per request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from tlspolicy.errors import CacheError

# Reconnect probe backoff after a backend failure, doubling from MIN to MAX (seconds).
PROBE_BACKOFF_MIN_S = 1.0
PROBE_BACKOFF_MAX_S = 60.0


class Outage:
    def __init__(
        self,
        name: str,
        probe: Callable[[], Awaitable[None]],
        *,
        clock: Callable[[], float],
        logger: logging.Logger,
    ) -> None:
        self.name = name
        self._probe = probe
        self._clock = clock
        self._log = logger
        self.reason: str | None = None  # the error that started the outage; None: healthy
        self._since = 0.0
        self._recovered_at = float("-inf")
        self._backoff = PROBE_BACKOFF_MIN_S
        self._retry_at = 0.0
        self._probing = False

    @property
    def healthy(self) -> bool:
        return self.reason is None

    async def ready(self) -> bool:
        """True when the backend may be called; during an outage, probe when it is due."""
        if self.reason is None:
            return True
        now = self._clock()
        if self._probing or now < self._retry_at:
            return False
        self._probing = True
        self._retry_at = now + self._backoff  # concurrent callers do not probe too
        try:
            await self._probe()
        except CacheError as exc:
            self._backoff = min(self._backoff * 2, PROBE_BACKOFF_MAX_S)
            self._retry_at = self._clock() + self._backoff
            self._log.debug("cache backend %s still unavailable: %s", self.name, exc)
            return False
        finally:
            self._probing = False
        self._recovered_at = self._clock()
        self._log.info(
            "cache backend %s available again after %.0f s",
            self.name,
            self._recovered_at - self._since,
        )
        self.reason = None
        return True

    def fail(self, exc: CacheError) -> None:
        """Start an outage (one WARNING); nothing more if one is already running."""
        if self.reason is not None:
            return
        now = self._clock()
        self.reason = str(exc) or type(exc).__name__
        self._since = now
        if now - self._recovered_at >= PROBE_BACKOFF_MAX_S:
            self._backoff = PROBE_BACKOFF_MIN_S
        else:
            self._backoff = min(self._backoff * 2, PROBE_BACKOFF_MAX_S)
        self._retry_at = now + self._backoff
        self._log.warning(
            "cache backend %s unavailable: %s; answering from memory and live lookups",
            self.name,
            self.reason,
        )
