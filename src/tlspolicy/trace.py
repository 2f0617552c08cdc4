"""A per-request record of what was looked up, for ``tlspolicy query`` and info logs.

Lookups append events; nothing here does I/O. A ``Trace`` is optional everywhere: the hot
path passes ``None`` and pays nothing.
"""

from __future__ import annotations

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
