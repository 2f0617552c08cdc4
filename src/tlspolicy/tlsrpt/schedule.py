"""When a day's report is due and when a failed delivery is tried again (pure).

* Due: 00:00 UTC of the next day + ``delay`` + a per-(day, domain) offset in
  [0, ``spread``] (RFC 8460 §4.1: send after a random delay). The offset is a hash, not a
  random draw, so every restart and every reporter sharing a store agree on it.
* Retries (RFC 8460 §5.5: up to 24 hours, exponential backoff): after attempt *n* wait
  ``retry_min * 2**(n-1)``, at most ``retry_max``; give up once the next attempt would
  fall more than ``retry_for`` after the first one.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta


def due_at(day: date, domain: str, *, delay: float, spread: float) -> datetime:
    """The moment the report of ``domain`` for ``day`` should go out."""
    digest = hashlib.sha256(f"{day.isoformat()}\0{domain}".encode()).digest()
    offset = int.from_bytes(digest[:8], "big") % (int(spread) + 1)
    midnight = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
    return midnight + timedelta(seconds=delay + offset)


def next_attempt(
    attempts: int,
    *,
    now: float,
    first_attempt: float,
    retry_min: float,
    retry_max: float,
    retry_for: float,
) -> float | None:
    """When to try again after ``attempts`` failed attempts; ``None``: give up."""
    wait = min(retry_max, retry_min * 2.0 ** max(0, attempts - 1))
    when = now + wait
    if when - first_attempt > retry_for:
        return None
    return when
