"""Operator metric families: fixed labels, unknown values counted as ``other``."""

from __future__ import annotations

from tlspolicy.metrics.registry import Metrics


def test_override_shadow_drift_counters() -> None:
    m = Metrics()
    m.override("active")
    m.override("bogus")
    m.shadow("dane-only")
    m.shadow("example.com")  # never a label
    m.drift("mta_sts")
    get = m.registry.get_sample_value
    assert get("tlspolicy_override_answers_total", {"state": "active"}) == 1
    assert get("tlspolicy_override_answers_total", {"state": "other"}) == 1
    assert get("tlspolicy_override_answers_total", {"state": "expired"}) == 0
    assert get("tlspolicy_shadow_answers_total", {"answer": "dane-only"}) == 1
    assert get("tlspolicy_shadow_answers_total", {"answer": "other"}) == 1
    assert get("tlspolicy_policy_drift_total", {"kind": "mta_sts"}) == 1
    assert get("tlspolicy_policy_drift_total", {"kind": "dane"}) == 0
