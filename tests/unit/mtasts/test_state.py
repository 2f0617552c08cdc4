"""StsState serialisation and the pure per-query view (RFC 8461 §3.3, §5.1)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from tlspolicy.mtasts.policy import Mode, parse_policy
from tlspolicy.mtasts.state import (
    PROACTIVE_REFRESH_S,
    Freshness,
    StsErrorKind,
    StsState,
    fresh_until,
    sts_view,
)

T0 = 1_700_000_000.0
ENFORCE = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n"
WEEK = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 604800\n"
RECHECK = 60.0


def _state(text: str = ENFORCE, **changes: Any) -> StsState:
    base = StsState(
        policy=parse_policy(text),
        policy_id="id1",
        fetched_at=T0,
        record_id="id1",
        checked_at=T0,
        negative_until=T0 + 60,
    )
    return replace(base, **changes)


def test_sts_state_json_round_trip() -> None:
    state = _state(
        error="policy fetch failed: timeout: slow",
        error_kind=StsErrorKind.FETCH,
        error_at=T0 + 5,
        error_id="id2",
        fetch_failed_at=T0 + 5,
    )
    data = json.loads(json.dumps(state.to_json()))
    assert StsState.from_json(data) == state


def test_sts_state_json_round_trip_without_policy() -> None:
    state = StsState(
        record_id=None,
        checked_at=T0,
        negative_until=T0 + 300,
        error="x",
        error_kind="no-record",
        error_at=T0,
    )
    assert StsState.from_json(json.loads(json.dumps(state.to_json()))) == state


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(
            {"policy": "version: STSv1\nmode: enforce\n", "policy_mode": None},
            id="old-entry-policy-no-longer-parses",
        ),
        pytest.param({"policy_mode": "strict"}, id="stored-mode-unknown"),
        pytest.param({"policy_max_age": "86400"}, id="stored-max-age-not-int"),
        pytest.param({"policy_mx": "mail.example.com"}, id="stored-mx-not-list"),
        pytest.param({"policy_mx": []}, id="stored-enforce-without-mx"),
        pytest.param({"policy": 5}, id="policy-not-text"),
        pytest.param({"policy_id": None}, id="policy-without-id"),
        pytest.param({"policy": None}, id="id-without-policy"),
        pytest.param({"fetched_at": "yesterday"}, id="time-not-number"),
        pytest.param({"checked_at": True}, id="time-bool"),
        pytest.param({"negative_until": float("nan")}, id="time-nan"),
        pytest.param({"record_id": 7}, id="id-not-string"),
        pytest.param({"error_kind": "weird"}, id="unknown-error-kind"),
    ],
)
def test_sts_state_from_json_rejects_bad_data(changes: dict[str, Any]) -> None:
    data = _state().to_json() | changes
    with pytest.raises(ValueError):
        StsState.from_json(data)


def test_a_cached_policy_is_decoded_without_a_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decode is on the path of every cached answer: the parsed fields are stored."""
    data = json.loads(json.dumps(_state(WEEK).to_json()))
    assert data["policy_mx"] == ["mail.example.com"] and data["policy_max_age"] == 604800

    def no_parse(text: str) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr("tlspolicy.mtasts.state.parse_policy", no_parse)
    assert StsState.from_json(data) == _state(WEEK)


def test_an_entry_written_before_the_fields_were_stored_is_parsed_once() -> None:
    old = {k: v for k, v in _state(WEEK).to_json().items() if not k.startswith("policy_")}
    old["policy_id"] = "id1"
    decoded = StsState.from_json(old)
    assert decoded == _state(WEEK)
    assert decoded.to_json()["policy_mode"] == "enforce"  # the next store writes both


def test_sts_state_from_json_rejects_non_object() -> None:
    with pytest.raises(ValueError):
        StsState.from_json([])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param(_state(), T0 + 86400, id="policy-expiry"),
        pytest.param(_state(negative_until=T0 + 90000), T0 + 90000, id="negative-later"),
        pytest.param(StsState(negative_until=T0 + 300), T0 + 300, id="no-policy"),
        pytest.param(StsState(), 0.0, id="empty"),
    ],
)
def test_sts_state_keep_until(state: StsState, expected: float) -> None:
    assert state.keep_until() == expected


@pytest.mark.parametrize(
    ("text", "due"),
    [
        pytest.param(ENFORCE, T0 + 43200, id="half-of-one-day"),
        pytest.param(WEEK, T0 + PROACTIVE_REFRESH_S, id="daily-for-long-policies"),
    ],
)
def test_sts_state_refresh_due_at(text: str, due: float) -> None:
    assert _state(text).refresh_due_at() == due


def test_sts_view_no_state_is_stale() -> None:
    view = sts_view(None, T0, recheck_interval=RECHECK)
    assert view.freshness is Freshness.STALE
    assert view.policy is None
    assert not view.dns_failed


@pytest.mark.parametrize(
    ("state", "now", "freshness"),
    [
        pytest.param(_state(), T0 + 1, Freshness.FRESH, id="just-fetched"),
        pytest.param(_state(), T0 + 59.9, Freshness.FRESH, id="before-recheck"),
        pytest.param(_state(), T0 + 60, Freshness.RECHECK, id="recheck-due"),
        pytest.param(
            _state(checked_at=T0 + 43190),
            T0 + 43195,
            Freshness.FRESH,
            id="checked-recently-before-half",
        ),
        pytest.param(
            _state(checked_at=T0 + 43190), T0 + 43200, Freshness.RECHECK, id="half-max-age-reached"
        ),
        pytest.param(
            _state(checked_at=T0 + 43201),
            T0 + 43202,
            Freshness.FRESH,
            id="proactive-attempted-wait-for-recheck",
        ),
        pytest.param(
            _state(checked_at=T0 + 86399), T0 + 86399.5, Freshness.FRESH, id="last-second-valid"
        ),
    ],
)
def test_sts_view_valid_policy(state: StsState, now: float, freshness: Freshness) -> None:
    view = sts_view(state, now, recheck_interval=RECHECK)
    assert view.policy is state.policy
    assert view.freshness is freshness
    assert view.policy_id == "id1"
    assert view.expires_at == T0 + 86400


def test_sts_view_expired_policy_is_not_applied() -> None:
    view = sts_view(_state(checked_at=T0 + 86000), T0 + 86400, recheck_interval=RECHECK)
    assert view.policy is None
    assert view.freshness is Freshness.STALE
    assert "expired" in view.reason


@pytest.mark.parametrize(
    "mode_text",
    [
        pytest.param(ENFORCE.replace("enforce", "testing"), id="testing"),
        pytest.param("version: STSv1\nmode: none\nmax_age: 86400\n", id="none"),
    ],
)
def test_sts_view_returns_any_mode(mode_text: str) -> None:
    view = sts_view(_state(mode_text), T0 + 1, recheck_interval=RECHECK)
    assert view.policy is not None
    assert view.policy.mode in (Mode.TESTING, Mode.NONE)


def test_sts_view_keeps_policy_through_errors() -> None:
    state = _state(
        checked_at=T0 + 100,
        record_id=None,
        error="TXT lookup failed: servfail",
        error_kind=StsErrorKind.DNS,
        error_at=T0 + 100,
    )
    view = sts_view(state, T0 + 101, recheck_interval=RECHECK)
    assert view.policy is state.policy
    assert not view.dns_failed  # a policy applies, so the DNS failure decides nothing
    assert "servfail" in view.reason


@pytest.mark.parametrize(
    ("kind", "error", "reason"),
    [
        pytest.param(StsErrorKind.NO_RECORD, "no v=STSv1 record", "no MTA-STS record", id="none"),
        pytest.param(StsErrorKind.RECORD, "bad TXT record: no id", "bad TXT", id="broken"),
        pytest.param(StsErrorKind.FETCH, "policy fetch failed: x", "fetch failed", id="fetch"),
        pytest.param(StsErrorKind.POLICY, "invalid policy: line 2", "invalid", id="policy"),
        pytest.param(StsErrorKind.DNS, "TXT lookup failed: timeout", "timeout", id="dns"),
    ],
)
def test_sts_view_negative_results_believed_until_negative_until(
    kind: StsErrorKind, error: str, reason: str
) -> None:
    state = StsState(
        checked_at=T0, negative_until=T0 + 300, error=error, error_kind=kind, error_at=T0
    )
    inside = sts_view(state, T0 + 299, recheck_interval=RECHECK)
    assert inside.freshness is Freshness.FRESH
    assert inside.policy is None
    assert reason in inside.reason
    assert inside.dns_failed is (kind is StsErrorKind.DNS)
    after = sts_view(state, T0 + 300, recheck_interval=RECHECK)
    assert after.freshness is Freshness.STALE
    assert after.dns_failed is (kind is StsErrorKind.DNS)


def test_fresh_until_matches_sts_view() -> None:
    policy = parse_policy("version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 86400\n")
    states = [
        None,
        StsState(policy=policy, policy_id="a", fetched_at=1000.0, record_id="a", checked_at=1000.0),
        StsState(policy=policy, policy_id="a", fetched_at=0.0, record_id="a", checked_at=80000.0),
        StsState(
            policy=None,
            policy_id=None,
            fetched_at=0.0,
            record_id=None,
            checked_at=900.0,
            negative_until=2000.0,
        ),
    ]
    for state in states:
        for now in (1000.0, 1030.0, 1059.0, 1100.0, 1999.0, 50000.0, 86399.0, 90000.0):
            until = fresh_until(state, now, recheck_interval=60.0)
            view = sts_view(state, now, recheck_interval=60.0)
            if view.freshness is not Freshness.FRESH:
                assert until == now
                continue
            assert until > now
            for probe in (now, (now + until) / 2, until - 0.001):
                later = sts_view(state, probe, recheck_interval=60.0)
                assert later.freshness is Freshness.FRESH
                assert later.policy is view.policy


def test_failures_found_under_other_lookup_settings_are_forgotten() -> None:
    """A fetch that failed under ``allow_private_addresses: false`` must not hold the
    domain in its backoff once the setting is fixed; a valid policy stays."""
    failed = StsState(
        record_id="id1", checked_at=100.0, negative_until=400.0, error="policy fetch failed",
        error_id="id1", fetch_failed_at=100.0, failure_tag="old",
    )  # fmt: skip
    assert failed.current("old") is failed
    fresh = failed.current("new")
    assert (fresh.negative_until, fresh.error_id, fresh.fetch_failed_at) == (0.0, None, 0.0)
    assert fresh.fetch_blocked_until("id1", 300.0) == 0.0
    assert sts_view(failed, 200.0, recheck_interval=60, tag="old").freshness is Freshness.FRESH
    assert sts_view(failed, 200.0, recheck_interval=60, tag="new").freshness is Freshness.STALE
    assert StsState.from_json(failed.to_json()) == failed
