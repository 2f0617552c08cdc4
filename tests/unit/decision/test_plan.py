"""The cache plan: every DANE freshness, MTA-STS freshness, profile and setting, plus the
refresh window, refresh back-off and the shared-result rules (leases, ``newer_than``)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from tlspolicy.cache.entry import CacheEntry, DaneBranch
from tlspolicy.config import MapProfile, parse_config
from tlspolicy.dane.result import DaneLevel, DaneResult
from tlspolicy.decision.plan import (
    REFRESH_RETRY_MAX_S,
    REFRESH_RETRY_S,
    PlanSettings,
    StsStep,
    decide_live,
    plan_answer,
    refresh_retry_delay,
    refresh_window_start,
    shared_dane,
    shared_sts,
)
from tlspolicy.decision.verdict import Verdict
from tlspolicy.mtasts.policy import parse_policy
from tlspolicy.mtasts.state import StsErrorKind, StsState

NOW = 1_750_000_000.0
DOMAIN = "example.com"
RECHECK = 60.0
HOT_TTL = 5.0


def policy(mode: str) -> str:
    return f"version: STSv1\nmode: {mode}\nmx: mx.example.com\nmax_age: 86400\n"


# DANE branch states: (name, branch or None, known DANE level or None when it must be looked up)
def dane_branch(level: DaneLevel, *, age: float, ttl: float = 3600.0) -> DaneBranch:
    checked = NOW - age
    return DaneBranch(DaneResult(level, f"{level.value} reason", int(ttl)), checked, checked + ttl)


DANE_STATES: dict[str, DaneBranch | None] = {
    "absent": None,
    "expired-dane-only": dane_branch(DaneLevel.DANE_ONLY, age=4000),
    "fresh-dane-only": dane_branch(DaneLevel.DANE_ONLY, age=10),
    "fresh-dane": dane_branch(DaneLevel.DANE, age=10),
    "fresh-none": dane_branch(DaneLevel.NONE, age=10),
    "refresh-window-dane-only": dane_branch(DaneLevel.DANE_ONLY, age=3500),
    "refresh-window-none": dane_branch(DaneLevel.NONE, age=3500),
}


def sts_state(mode: str, *, fetched_age: float, checked_age: float) -> StsState:
    return StsState(
        policy=parse_policy(policy(mode)),
        policy_id="id1",
        fetched_at=NOW - fetched_age,
        record_id="id1",
        checked_at=NOW - checked_age,
    )


STS_STATES: dict[str, StsState | None] = {
    "absent": None,
    "fresh-enforce": sts_state("enforce", fetched_age=10, checked_age=10),
    "fresh-testing": sts_state("testing", fetched_age=10, checked_age=10),
    "fresh-none-mode": sts_state("none", fetched_age=10, checked_age=10),
    "recheck-enforce": sts_state("enforce", fetched_age=100, checked_age=100),
    "expired-enforce": sts_state("enforce", fetched_age=90000, checked_age=90000),
    "no-record": StsState(
        checked_at=NOW - 10, negative_until=NOW + 100, error_kind=StsErrorKind.NO_RECORD
    ),
    "dns-failed": StsState(
        checked_at=NOW - 10,
        negative_until=NOW + 20,
        error="MTA-STS TXT lookup failed: servfail",
        error_kind=StsErrorKind.DNS,
    ),
    "negative-over": StsState(
        checked_at=NOW - 200, negative_until=NOW - 1, error_kind=StsErrorKind.NO_RECORD
    ),
}

PROFILES = {
    "plain": MapProfile(),
    "tlsrpt": MapProfile(tlsrpt=True),
    "strict": MapProfile(strict_testing=True),
    "no-servername": MapProfile(servername=False),
}
SETTINGS = {
    "default": PlanSettings(recheck_interval=RECHECK, hot_ttl=HOT_TTL),
    "temp-on-dns": PlanSettings(
        recheck_interval=RECHECK, hot_ttl=HOT_TTL, temp_on_dns_failure=True
    ),
    "dane-off": PlanSettings(recheck_interval=RECHECK, hot_ttl=HOT_TTL, dane_enabled=False),
    "no-refresh-ahead": PlanSettings(
        recheck_interval=RECHECK, hot_ttl=HOT_TTL, refresh_ahead=False
    ),
}


def expected(dane_name: str, sts_name: str, profile: MapProfile, settings: PlanSettings) -> tuple:
    """The plan written out by hand from the rules in plan.py's docstring:
    (verdict or None, dane known?, sts step, reusable?, refresh due?)."""
    branch = DANE_STATES[dane_name]
    if not settings.dane_enabled:
        level: DaneLevel | None = DaneLevel.NONE
    elif branch is not None and branch.fresh(NOW):
        level = branch.result.level
    else:
        level = None
    refresh = (
        settings.dane_enabled and settings.refresh_ahead and dane_name.startswith("refresh-window")
    )
    if level in (DaneLevel.DANE_ONLY, DaneLevel.DANE):
        verdict = Verdict(level.value)
        return verdict, True, StsStep.NONE, not refresh, refresh
    sts_fresh = {
        "absent": "stale",
        "fresh-enforce": "fresh",
        "fresh-testing": "fresh",
        "fresh-none-mode": "fresh",
        "recheck-enforce": "recheck",
        "expired-enforce": "stale",
        "no-record": "fresh",
        "dns-failed": "fresh",
        "negative-over": "stale",
    }[sts_name]
    if sts_fresh == "stale":
        return None, level is not None, StsStep.LOOKUP, False, refresh
    step = StsStep.BACKGROUND if sts_fresh == "recheck" else StsStep.NONE
    if level is None:
        return None, False, step, False, refresh
    if sts_name in ("fresh-enforce", "recheck-enforce") or (
        sts_name == "fresh-testing" and profile.strict_testing
    ):
        verdict = Verdict.SECURE
    elif sts_name == "dns-failed" and settings.temp_on_dns_failure:
        verdict = Verdict.TEMP
    else:
        verdict = Verdict.NOTFOUND
    reusable = sts_fresh == "fresh" and verdict is not Verdict.TEMP and not refresh
    return verdict, True, step, reusable, refresh


CASES = list(itertools.product(DANE_STATES, STS_STATES, PROFILES, SETTINGS))


@pytest.mark.parametrize(("dane_name", "sts_name", "profile_name", "settings_name"), CASES)
def test_plan_every_state(
    dane_name: str, sts_name: str, profile_name: str, settings_name: str
) -> None:
    entry = CacheEntry(DOMAIN, dane=DANE_STATES[dane_name], sts=STS_STATES[sts_name])
    profile, settings = PROFILES[profile_name], SETTINGS[settings_name]
    plan = plan_answer(entry, NOW, profile, settings)
    verdict, dane_known, step, reusable, refresh = expected(dane_name, sts_name, profile, settings)
    assert (plan.decision.verdict if plan.decision else None) == verdict
    assert (plan.dane is not None) == dane_known
    assert plan.sts is step
    assert (plan.reusable_until > NOW) == reusable
    assert plan.refresh_dane is refresh
    if plan.decision is not None:
        assert plan.decision.domain == DOMAIN
        assert plan.reusable_until <= NOW + HOT_TTL
        assert plan.describe() == plan.decision.verdict.value
    else:
        assert plan.describe().startswith("(the next query looks up: ")
        assert ("dane" in plan.lookups) is (not dane_known)


def test_plan_without_entry_looks_up_both_branches() -> None:
    plan = plan_answer(None, NOW, MapProfile(), SETTINGS["default"])
    assert (plan.decision, plan.dane, plan.sts) == (None, None, StsStep.LOOKUP)
    assert plan.lookups == ("dane", "mta-sts")


def test_plan_reuse_bounded_by_each_deadline() -> None:
    settings = PlanSettings(recheck_interval=RECHECK, hot_ttl=10_000.0)
    # The DANE branch enters its refresh window 3600 * 0.8 s after it was checked.
    dane = dane_branch(DaneLevel.DANE_ONLY, age=10)
    plan = plan_answer(CacheEntry(DOMAIN, dane=dane), NOW, MapProfile(), settings)
    assert plan.reusable_until == dane.checked_at + 3600 * 0.8
    # Without refresh-ahead, its expiry; and never beyond hot_ttl.
    off = replace(settings, refresh_ahead=False)
    assert plan_answer(CacheEntry(DOMAIN, dane=dane), NOW, MapProfile(), off).reusable_until == (
        dane.expires_at
    )
    short = replace(settings, hot_ttl=2.0)
    assert plan_answer(CacheEntry(DOMAIN, dane=dane), NOW, MapProfile(), short).reusable_until == (
        NOW + 2.0
    )
    # An MTA-STS answer holds until the next id re-check.
    entry = CacheEntry(
        DOMAIN, dane=dane_branch(DaneLevel.NONE, age=10), sts=STS_STATES["fresh-enforce"]
    )
    plan = plan_answer(entry, NOW, MapProfile(), settings)
    assert plan.reusable_until == NOW - 10 + RECHECK
    # A negative MTA-STS answer holds until the negative result stops being believed.
    entry = replace(entry, sts=STS_STATES["no-record"])
    assert plan_answer(entry, NOW, MapProfile(), settings).reusable_until == NOW + 100


def test_plan_from_config() -> None:
    config = parse_config(
        {
            "dane": {"enabled": False},
            "mta_sts": {"recheck_interval": 30, "dns_failure": "temp"},
            "cache": {
                "backend": "memory",
                "hot_ttl": 2,
                "refresh_ahead": False,
                "refresh_before": 0.5,
            },
        }
    )
    assert PlanSettings.from_config(config) == PlanSettings(
        dane_enabled=False,
        recheck_interval=30,
        temp_on_dns_failure=True,
        hot_ttl=2,
        refresh_ahead=False,
        refresh_before=0.5,
        lookup_tag=config.lookup_tag(),
    )
    assert len(config.lookup_tag()) == 12
    changed = parse_config({"mta_sts": {"allow_private_addresses": True}})
    assert changed.lookup_tag() != parse_config({}).lookup_tag()
    assert parse_config({"cache": {"hot_ttl": 9}}).lookup_tag() == parse_config({}).lookup_tag()


@pytest.mark.parametrize(
    ("dane_level", "sts_name", "temp_on_dns", "verdict"),
    [
        (DaneLevel.DANE_ONLY, "fresh-enforce", False, Verdict.DANE_ONLY),
        (DaneLevel.TEMP, "fresh-enforce", False, Verdict.TEMP),
        (DaneLevel.NONE, "fresh-enforce", False, Verdict.SECURE),
        (DaneLevel.NONE, "dns-failed", False, Verdict.NOTFOUND),
        (DaneLevel.NONE, "dns-failed", True, Verdict.TEMP),
        (DaneLevel.NONE, "absent", False, Verdict.NOTFOUND),
        (DaneLevel.NONE, "expired-enforce", False, Verdict.NOTFOUND),
    ],
)
def test_decide_live(
    dane_level: DaneLevel, sts_name: str, temp_on_dns: bool, verdict: Verdict
) -> None:
    settings = PlanSettings(recheck_interval=RECHECK, temp_on_dns_failure=temp_on_dns)
    dane = DaneResult(dane_level, "why", 60)
    decision = decide_live(
        DOMAIN, dane, STS_STATES[sts_name], now=NOW, profile=MapProfile(), settings=settings
    )
    assert decision.verdict is verdict


def test_refresh_window_start() -> None:
    assert refresh_window_start(1000.0, 2000.0, 0.2) == 1800.0
    assert refresh_window_start(1000.0, 1000.0, 0.5) == 999.5  # lifetime counted as >= 1 s


def test_refresh_retry_delay_doubles_to_a_cap() -> None:
    delays = [refresh_retry_delay(n) for n in range(1, 10)]
    assert delays[:4] == [
        REFRESH_RETRY_S,
        2 * REFRESH_RETRY_S,
        4 * REFRESH_RETRY_S,
        8 * REFRESH_RETRY_S,
    ]
    assert delays[-1] == REFRESH_RETRY_MAX_S
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert refresh_retry_delay(0) == REFRESH_RETRY_S
    assert refresh_retry_delay(10_000) == REFRESH_RETRY_MAX_S


def test_shared_dane_counts_only_fresh_and_newer_results() -> None:
    fresh = CacheEntry(DOMAIN, dane=dane_branch(DaneLevel.DANE, age=10))
    assert shared_dane(fresh, NOW, newer_than=0.0) is not None
    assert shared_dane(fresh, NOW, newer_than=NOW - 10) is None  # the data being replaced
    assert shared_dane(fresh, NOW, newer_than=NOW - 11) is not None
    expired = CacheEntry(DOMAIN, dane=dane_branch(DaneLevel.DANE, age=4000))
    assert shared_dane(expired, NOW, newer_than=0.0) is None
    assert shared_dane(None, NOW, newer_than=0.0) is None
    assert shared_dane(CacheEntry(DOMAIN), NOW, newer_than=0.0) is None


@pytest.mark.parametrize(
    ("sts_name", "newer_than", "counts"),
    [
        ("fresh-enforce", 0.0, True),
        ("fresh-enforce", NOW - 10, False),  # not newer than the state a re-check replaces
        ("recheck-enforce", 0.0, True),  # usable now; its own re-check is another matter
        ("expired-enforce", 0.0, False),  # stale: another lookup is needed
        ("no-record", 0.0, True),
        ("negative-over", 0.0, False),
        ("absent", 0.0, False),
    ],
)
def test_shared_sts(sts_name: str, newer_than: float, counts: bool) -> None:
    entry = CacheEntry(DOMAIN, sts=STS_STATES[sts_name])
    found = shared_sts(entry, NOW, newer_than=newer_than, recheck_interval=RECHECK)
    assert (found is not None) is counts
