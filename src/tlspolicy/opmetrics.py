"""The operator-control metric families (issue 14), bound by ``metrics.Metrics``.

Fixed label sets only, never a domain: override answers by state, what shadow maps would
have answered, and drift by kind. Kept apart to keep ``metrics`` small.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

OVERRIDE_STATES = ("active", "expired")
DRIFT_KINDS = ("mta_sts", "dane")


class OperatorMetrics:
    _other: str

    def _bind_operator(self, r: CollectorRegistry, answers: tuple[str, ...], other: str) -> None:
        """Overrides, shadow mode and drift (issue 14): fixed label sets, no domains."""
        self._other = other
        overrides = Counter(
            "tlspolicy_override_answers_total",
            "Queries an operator override matched, by state (expired: ignored, looked up)",
            ["state"],
            registry=r,
        )
        self._override_children = {s: overrides.labels(state=s) for s in (*OVERRIDE_STATES, other)}
        shadow = Counter(
            "tlspolicy_shadow_answers_total",
            "What shadow maps would have answered (they answer NOTFOUND)",
            ["answer"],
            registry=r,
        )
        self._shadow_children = {a: shadow.labels(answer=a) for a in (*answers, other)}
        drift = Counter(
            "tlspolicy_policy_drift_total",
            "Cached enforcing policies that stopped covering the current MX hosts, by kind",
            ["kind"],
            registry=r,
        )
        self._drift_children = {k: drift.labels(kind=k) for k in (*DRIFT_KINDS, other)}

    def override(self, state: str) -> None:
        self._override_children.get(state, self._override_children[self._other]).inc()

    def shadow(self, answer: str) -> None:
        self._shadow_children.get(answer, self._shadow_children[self._other]).inc()

    def drift(self, kind: str) -> None:
        self._drift_children.get(kind, self._drift_children[self._other]).inc()
