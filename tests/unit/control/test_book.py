"""Which override applies, what it answers, and when it weakens a domain."""

from __future__ import annotations

from dataclasses import replace

from tests.unit.cache.helpers import make_entry, make_sts_entry
from tlspolicy.config import MapProfile
from tlspolicy.config.overrides import Override
from tlspolicy.control.book import (
    OverrideState,
    find_override,
    merge,
    override_decision,
    weakens,
)
from tlspolicy.decision.verdict import Verdict
from tlspolicy.socketmap.answer import render

NOW = 1_800_000_000.0


def _book(*overrides: Override) -> dict[str, Override]:
    return merge((), overrides)


def test_exact_domain_then_nearest_parent_with_subdomains() -> None:
    book = _book(
        Override("example", "may", subdomains=True),
        Override("a.example", "encrypt"),
        Override("b.a.example", "lookup"),
    )
    assert find_override(book, "a.example", NOW).override.level == "encrypt"  # type: ignore[union-attr]
    assert find_override(book, "x.a.example", NOW).override.domain == "example"  # type: ignore[union-attr]
    assert find_override(book, "b.a.example", NOW).override.level == "lookup"  # type: ignore[union-attr]
    assert find_override(book, "other.test", NOW) is None
    assert find_override(_book(Override("a.example", "may")), "x.a.example", NOW) is None


def test_stored_overrides_replace_configured_ones() -> None:
    merged = merge([Override("a.example", "may", source="config")], [Override("a.example", "none")])
    assert merged["a.example"].level == "none"


def test_expired_override_is_matched_but_decides_nothing() -> None:
    book = _book(Override("a.example", "may", until=NOW))
    match = find_override(book, "a.example", NOW)
    assert match is not None and match.state is OverrideState.EXPIRED
    assert override_decision(match, "a.example") is None


def test_decision_renders_the_level_as_typed() -> None:
    cases = {
        Override("a.example", "may", reason="r"): ("OK may", "may"),
        Override("a.example", "none"): ("OK none", "none"),
        Override("a.example", "encrypt"): ("OK encrypt", "encrypt"),
        Override("a.example", "dane-only"): ("OK dane-only", "dane-only"),
        Override("a.example", "secure", "mx.a.example:.a.example"): (
            "OK secure match=mx.a.example:.a.example",
            "secure",
        ),
    }
    for override, expected in cases.items():
        decision = override_decision(find_override(_book(override), "a.example", NOW), "a.example")
        assert decision is not None and decision.override == override
        reply = render(decision, MapProfile(tlsrpt=True))
        assert (reply.text, reply.kind) == expected
    lookup = find_override(_book(Override("a.example", "lookup")), "a.example", NOW)
    assert override_decision(lookup, "a.example") is None


def test_reason_says_override_and_expiry() -> None:
    override = Override("a.example", "may", until=NOW + 60, reason="ticket 1")
    decision = override_decision(find_override(_book(override), "a.example", NOW), "a.example")
    assert decision is not None and decision.verdict is Verdict.MAY
    assert decision.reason == f"override until {override.describe_until()}: ticket 1"


def test_weakens_dane_and_mta_sts_enforce() -> None:
    dane = make_entry("a.example", NOW)
    sts = replace(make_sts_entry("a.example", NOW), dane=None)
    assert weakens(Override("a.example", "secure"), dane) == "DANE"
    assert weakens(Override("a.example", "dane"), dane) is None
    assert weakens(Override("a.example", "may"), sts) == "MTA-STS enforce"
    assert weakens(Override("a.example", "secure", "mx.a.example"), sts) is None
    assert weakens(Override("a.example", "none"), None) is None
    assert weakens(Override("a.example", "lookup"), dane) is None
