"""Rate limit for tracebacks of unexpected errors while answering, sans-IO.

An unexpected exception is answered ``TEMP internal error`` and the connection goes on. If
the bug hits every request, a traceback per request would flood the log: the traceback of
each distinct error (type and place) is logged once per ``window`` seconds, and the next
log line says how many were not.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

DEFAULT_WINDOW_S = 600.0
# Distinct errors remembered; past this the oldest is forgotten (its next one logs again).
MAX_KINDS = 128


@dataclass(slots=True)
class _Seen:
    logged_at: float
    suppressed: int = 0


def error_kind(exc: BaseException) -> str:
    """``module.Type at file:line`` of the innermost frame: what makes two errors "the same"."""
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        name += f" at {last.filename}:{last.lineno}"
    return name


class ErrorLog:
    """Decides whether to log a traceback for an error of a given kind now."""

    def __init__(self, window: float = DEFAULT_WINDOW_S) -> None:
        self.window = window
        self._seen: dict[str, _Seen] = {}

    def admit(self, kind: str, now: float) -> int | None:
        """None: stay quiet (counted). Otherwise log it; the number is how many were not."""
        seen = self._seen.get(kind)
        if seen is not None and now - seen.logged_at < self.window:
            seen.suppressed += 1
            return None
        suppressed = seen.suppressed if seen is not None else 0
        self._seen.pop(kind, None)
        if len(self._seen) >= MAX_KINDS:
            self._seen.pop(next(iter(self._seen)))
        self._seen[kind] = _Seen(logged_at=now)
        return suppressed
