"""The DANE-first decision: DANE decides when it can; MTA-STS only when DANE says no."""

from __future__ import annotations

import pytest

from tlspolicy.config import MapProfile
from tlspolicy.dane.result import DaneLevel, DaneResult
from tlspolicy.decision.verdict import Verdict, decide_dane_first, decide_sts
from tlspolicy.mtasts.policy import parse_policy
from tlspolicy.mtasts.state import Freshness, StsView

DOMAIN = "example.com"


def view(mode: str | None, *, dns_failed: bool = False) -> StsView:
    if mode is None:
        return StsView(None, Freshness.FRESH, "no MTA-STS record", dns_failed=dns_failed)
    text = f"version: STSv1\nmode: {mode}\nmx: mx.example.com\nmax_age: 86400\n"
    return StsView(parse_policy(text), Freshness.FRESH, f"{mode} policy")


@pytest.mark.parametrize(
    ("level", "verdict"),
    [
        (DaneLevel.DANE_ONLY, Verdict.DANE_ONLY),
        (DaneLevel.DANE, Verdict.DANE),
        (DaneLevel.TEMP, Verdict.TEMP),
    ],
)
def test_dane_decides_without_mta_sts(level: DaneLevel, verdict: Verdict) -> None:
    decision = decide_dane_first(DOMAIN, DaneResult(level, "why", 60), None, MapProfile())
    assert decision.verdict is verdict
    assert decision.reason == "why" and decision.policy is None


def test_dane_first_even_with_an_enforce_policy() -> None:
    dane = DaneResult(DaneLevel.DANE, "one host has TLSA", 60)
    assert decide_dane_first(DOMAIN, dane, view("enforce"), MapProfile()).verdict is Verdict.DANE


def test_no_dane_needs_the_mta_sts_view() -> None:
    with pytest.raises(ValueError, match="MTA-STS view required"):
        decide_dane_first(DOMAIN, DaneResult(DaneLevel.NONE, "no", 60), None, MapProfile())


@pytest.mark.parametrize(
    ("mode", "strict", "verdict"),
    [
        ("enforce", False, Verdict.SECURE),
        ("testing", False, Verdict.NOTFOUND),
        ("testing", True, Verdict.SECURE),
        ("none", True, Verdict.NOTFOUND),
        (None, False, Verdict.NOTFOUND),
    ],
)
def test_mta_sts_modes(mode: str | None, strict: bool, verdict: Verdict) -> None:
    decision = decide_sts(DOMAIN, view(mode), MapProfile(strict_testing=strict))
    assert decision.verdict is verdict
    assert (decision.policy is not None) is (verdict is Verdict.SECURE)


@pytest.mark.parametrize(("temp", "verdict"), [(False, Verdict.NOTFOUND), (True, Verdict.TEMP)])
def test_failed_txt_lookup_answers_as_configured(temp: bool, verdict: Verdict) -> None:
    decision = decide_sts(
        DOMAIN, view(None, dns_failed=True), MapProfile(), temp_on_dns_failure=temp
    )
    assert decision.verdict is verdict
