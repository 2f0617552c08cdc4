"""What the service answers: a decision and where it came from, never wire text.

The socketmap edge (``server.answers``) formats an ``Outcome`` for Postfix; the CLI reads
the verdict for its exit status; metrics use the verdict as a label. Nobody parses a
reply string back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tlspolicy.dane.result import DaneResult
from tlspolicy.decision.verdict import Decision, Verdict
from tlspolicy.mtasts.state import StsState, StsView


class Source(StrEnum):
    """Where an answer came from."""

    CACHE = "cache"  # cached data alone (the plan answered)
    LIVE = "live"  # at least one lookup ran for it
    OVERRIDE = "override"  # an operator override decided, before any lookup
    NO_LOOKUP = "no-lookup"  # the key is not a domain to look up (IP literal, parent probe)
    UNKNOWN_MAP = "unknown-map"  # the map name is not configured
    TIMEOUT = "timeout"  # no decision within server.request_timeout
    ERROR = "error"  # an internal error (logged with its traceback)


@dataclass(slots=True)
class Resolution:
    """How one domain was decided (for logs, metrics and ``tlspolicy query``)."""

    domain: str
    decision: Decision
    source: Source
    dane: DaneResult | None = None
    sts: StsView | None = None
    sts_state: StsState | None = None
    reusable_until: float = 0.0  # a cache-only decision holds until then (0: do not reuse)
    holds_until: float = 0.0  # ... and past that while the data is unchanged (cache.quiet)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one socketmap request, before formatting."""

    decision: Decision
    source: Source
    domain: str | None = None  # the policy domain the key named (None: no lookup)
    reusable_until: float = 0.0
    holds_until: float = 0.0  # see Resolution

    @property
    def verdict(self) -> Verdict:
        return self.decision.verdict
