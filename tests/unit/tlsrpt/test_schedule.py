"""When reports are due and how failed deliveries back off."""

from __future__ import annotations

from datetime import UTC, date, datetime

from tlspolicy.tlsrpt.schedule import due_at, next_attempt

DAY = date(2026, 12, 1)
MIDNIGHT = datetime(2026, 12, 2, tzinfo=UTC)


def test_schedule_due_within_delay_and_spread_and_stable() -> None:
    due = due_at(DAY, "example.com", delay=600, spread=14400)
    assert 600 <= (due - MIDNIGHT).total_seconds() <= 600 + 14400
    assert due == due_at(DAY, "example.com", delay=600, spread=14400)
    spread = {due_at(DAY, f"d{i}.example", delay=0, spread=14400) for i in range(20)}
    assert len(spread) > 10  # domains are spread out


def test_schedule_no_spread_is_exactly_delay() -> None:
    assert (due_at(DAY, "x.example", delay=60, spread=0) - MIDNIGHT).total_seconds() == 60


def test_schedule_backoff_doubles_caps_and_gives_up_after_window() -> None:
    kw = {"first_attempt": 0.0, "retry_min": 300.0, "retry_max": 3600.0, "retry_for": 86400.0}
    assert next_attempt(1, now=0.0, **kw) == 300.0
    assert next_attempt(2, now=300.0, **kw) == 900.0
    assert next_attempt(10, now=1000.0, **kw) == 4600.0
    assert next_attempt(30, now=86000.0, **kw) is None
