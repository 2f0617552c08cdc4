"""Override values: levels and expiries as operators type them, and the JSON round trip."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from tlspolicy.config.overrides import (
    OVERRIDE_RETAIN_S,
    Override,
    OverrideError,
    clean_reason,
    parse_level,
    parse_until,
)

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("level", "match", "expected"),
    [
        ("may", "", ("may", "")),
        ("DANE-only", "", ("dane-only", "")),
        ("secure", "mx.a.example:.a.example", ("secure", "mx.a.example:.a.example")),
        ("secure match=mx.a.example", "", ("secure", "mx.a.example")),
        ("lookup", "", ("lookup", "")),
    ],
)
def test_parse_level_accepts_postfix_levels(
    level: str, match: str, expected: tuple[str, str]
) -> None:
    assert parse_level(level, match) == expected


@pytest.mark.parametrize(
    ("level", "match"),
    [
        ("verify", ""),
        ("", ""),
        ("may", "mx.example"),
        ("dane match=x", ""),
        ("secure", "a b"),
        ("secure", "{x}"),
    ],
)
def test_parse_level_refuses_what_postfix_cannot_take(level: str, match: str) -> None:
    with pytest.raises(OverrideError):
        parse_level(level, match)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", NOW + 5400),
        ("2h", NOW + 7200),
        ("1.5d", NOW + 1.5 * 86400),
        ("1w", NOW + 7 * 86400),
        ("2027-02-01", datetime(2027, 2, 1, tzinfo=UTC).timestamp()),
        ("2027-02-01T00:00:00+01:00", datetime(2027, 2, 1, tzinfo=UTC).timestamp() - 3600),
        ("2027-02-01T12:00:00Z", datetime(2027, 2, 1, 12, tzinfo=UTC).timestamp()),
    ],
)
def test_parse_until_durations_and_dates(text: str, expected: float) -> None:
    assert parse_until(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "5x", "2020-01-01", "0s"])
def test_parse_until_refuses_garbage_and_the_past(text: str) -> None:
    with pytest.raises(OverrideError):
        parse_until(text, NOW)


def test_override_json_round_trip_and_lifetime() -> None:
    override = Override("a.example", "secure", "mx.a.example", NOW + 60, "why", True, "cache", NOW)
    assert Override.from_json(override.to_json()) == override
    assert override.postfix_level == "secure match=mx.a.example"
    assert override.active(NOW + 59) and not override.active(NOW + 60)
    assert override.keep_until() == NOW + 60 + OVERRIDE_RETAIN_S
    assert Override("a.example", "may").keep_until() == math.inf
    assert Override("a.example", "may").describe_until() == "no expiry"


def test_clean_reason_is_one_bounded_line() -> None:
    assert clean_reason(" a\n b\t c ") == "a b c"
    assert len(clean_reason("x" * 1000)) == 200
