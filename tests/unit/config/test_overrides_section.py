"""The ``overrides:`` configuration section."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tlspolicy.config import parse_config
from tlspolicy.errors import ConfigError


def test_overrides_section_parses_levels_dates_and_flags() -> None:
    config = parse_config(
        {
            "overrides": {
                "Partner.Example.": {
                    "level": "secure match=mx.partner.example",
                    "until": date(2027, 2, 1),
                    "reason": "cert\nexpired",
                    "subdomains": True,
                },
                "legacy.example": {"level": "may"},
                "at.example": {"level": "encrypt", "until": "2027-02-01T12:00:00Z"},
            }
        }
    )
    by_domain = {o.domain: o for o in config.overrides}
    partner = by_domain["partner.example"]
    assert (partner.level, partner.match, partner.subdomains) == (
        "secure",
        "mx.partner.example",
        True,
    )
    assert partner.until == datetime(2027, 2, 1, tzinfo=UTC).timestamp()
    assert partner.reason == "cert expired" and partner.source == "config"
    assert by_domain["legacy.example"].until is None
    assert by_domain["at.example"].until == datetime(2027, 2, 1, 12, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"level": "verify"}, "overrides.a.example: level 'verify'"),
        ({}, "overrides.a.example: level: empty"),
        ({"level": "may", "until": "7d"}, "overrides.a.example.until: must be an ISO date"),
        ({"level": "may", "colour": "red"}, "overrides.a.example.colour: unknown key"),
        ({"level": "may", "match": "mx.a.example"}, "--match applies to the secure level"),
    ],
)
def test_overrides_section_names_the_bad_key(body: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_config({"overrides": {"a.example": body}})


def test_shadow_profile_option() -> None:
    config = parse_config({"maps": {"QUERY": {"shadow": True}}})
    assert config.maps["QUERY"].shadow
