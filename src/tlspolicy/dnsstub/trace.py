"""A per-request record of what was looked up, for ``tlspolicy query`` and info logs.

No signature carries a trace: ``recording(trace)`` makes it the current one (a context
variable, so it follows the task and the tasks it starts), and the adapters that know the
details (the DNS client, the policy fetcher) and the lookups' notes append to whatever is
current. The server records nothing: outside ``recording`` the current trace is None and
``record``/``note`` cost one lookup of the variable. Nothing here does I/O.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class TraceEvent:
    """One lookup: a DNS query, an HTTPS fetch, a cache read or a decision step."""

    kind: str  # "dns" | "https" | "cache" | "note"
    name: str  # query name, URL, or cache key
    detail: str = ""  # e.g. rdtype for DNS, result summary
    status: str = ""  # "secure" | "insecure" | "error" | "ok" | "hit" | "miss" | ...
    ttl: int | None = None
    elapsed_ms: float | None = None
    data: list[str] = field(default_factory=list)  # records, in presentation form

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", [])}


@dataclass(slots=True)
class Trace:
    events: list[TraceEvent] = field(default_factory=list)

    def add(self, event: TraceEvent) -> None:
        self.events.append(event)

    def note(self, text: str) -> None:
        self.events.append(TraceEvent(kind="note", name=text))


_CURRENT: ContextVar[Trace | None] = ContextVar("tlspolicy_trace", default=None)


@contextlib.contextmanager
def recording(trace: Trace) -> Iterator[Trace]:
    """Within this block (and the tasks started in it), lookups are recorded in ``trace``."""
    token = _CURRENT.set(trace)
    try:
        yield trace
    finally:
        _CURRENT.reset(token)


def current() -> Trace | None:
    return _CURRENT.get()


def record(event: TraceEvent) -> None:
    """Append ``event`` to the current trace, if one is being recorded."""
    trace = _CURRENT.get()
    if trace is not None:
        trace.add(event)


def note(text: str) -> None:
    """Append a note (a decision step) to the current trace, if one is being recorded."""
    trace = _CURRENT.get()
    if trace is not None:
        trace.note(text)
