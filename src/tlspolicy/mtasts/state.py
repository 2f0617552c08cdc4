"""What we know about one domain's MTA-STS, and the cache rules of RFC 8461 §3.3 and §5.1.

Pure: ``StsState`` is a value that ``lookup.refresh_sts`` replaces after each refresh, and
``sts_view`` decides, on every query and without I/O, what to apply now and whether to look
again. Rules kept here:

* A fetched policy is applied while ``fetched_at + max_age > now``, in any mode; the caller
  maps ``testing``/``none`` to its answer (RFC 8461 §3.3, §5).
* Nothing but a newer valid policy replaces a policy: a DNS error, a missing or broken TXT
  record, a failed fetch or an invalid body leave it in force until it expires
  (RFC 8461 §3.1, §3.3, §5.1). A fetched ``mode: none`` policy *is* a newer policy and
  replaces an ``enforce`` one at once (RFC 8461 §8.3).
* The TXT id is checked every ``recheck_interval``; a new id means a new fetch (§3.1).
* Proactive refresh (RFC 8461 §3.3 "SHOULD proactively refresh ... once per day", §10.2):
  the policy is fetched again, whatever the id says, once it has lived half its ``max_age``
  or one day, whichever comes first. A successful fetch restarts ``max_age``; an unchanged id
  alone never extends a policy (unlike postfix-mta-sts-resolver's NOT_CHANGED rule,
  docs/protocol-notes.md §7.4), so a policy that cannot be re-fetched ends at its
  ``max_age`` as the RFC says.
* "No policy" results (no record, broken record, failed lookup or fetch with nothing valid
  cached) are believed until ``negative_until``; after that the view asks for a lookup.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from tlspolicy.errors import PolicySyntaxError
from tlspolicy.mtasts.policy import Policy, from_fields, parse_policy

PROACTIVE_REFRESH_S = 86_400.0  # RFC 8461 §3.3: "a suggested refresh frequency is once per day"


class StsErrorKind(StrEnum):
    """Why the last refresh found no new policy (``StsState.error_kind``)."""

    DNS = "dns"  # the TXT lookup failed (SERVFAIL, timeout, ...): temporary
    NO_RECORD = "no-record"  # no v=STSv1 TXT record: the domain does not do MTA-STS
    RECORD = "record"  # TXT record broken or ambiguous: no policy available (§3.1)
    FETCH = "fetch"  # the HTTPS fetch failed (TLSRPT sts-policy-fetch-error)
    POLICY = "policy"  # the fetched body is not a valid policy (TLSRPT sts-policy-invalid)


class Freshness(StrEnum):
    """How the caller may use a view."""

    FRESH = "fresh"  # answer from it
    RECHECK = "recheck"  # answer from it now, and refresh in the background
    STALE = "stale"  # refresh first, then answer from the new state


@dataclass(frozen=True, slots=True)
class StsState:
    """The cached MTA-STS knowledge for one policy domain (times are epoch seconds).

    Attributes:
        policy: the last valid fetched policy (any mode), possibly expired; None if none.
        policy_id: the TXT id that ``policy`` was fetched under.
        fetched_at: when ``policy`` was fetched.
        record_id: the id seen at the last successful TXT lookup; None when that lookup found
            no usable record (or none succeeded yet).
        checked_at: when the last TXT lookup was attempted.
        negative_until: "no policy" results are believed until then.
        error: what went wrong in the last refresh, for logs; None when nothing did.
        error_kind: a ``StsErrorKind`` value, or None.
        error_at: when ``error`` happened.
        error_id: the TXT id whose last fetch failed (fetch backoff per id, RFC 8461 §3.3).
        fetch_failed_at: when the fetch for ``error_id`` failed.
        failure_tag: the lookup settings (``Config.lookup_tag``) under which the failures
            and the "no policy" window above were found. Under other settings they are
            forgotten (``current``): the fix of a setting such as
            ``mta_sts.allow_private_addresses`` must not wait for a stored backoff.
    """

    policy: Policy | None = None
    policy_id: str | None = None
    fetched_at: float = 0.0
    record_id: str | None = None
    checked_at: float = 0.0
    negative_until: float = 0.0
    error: str | None = None
    error_kind: StsErrorKind | None = None
    error_at: float = 0.0
    error_id: str | None = None
    fetch_failed_at: float = 0.0
    failure_tag: str = ""

    def current(self, tag: str) -> StsState:
        """This state as seen under the lookup settings ``tag``: a valid policy is kept
        whatever the settings, failures and "no policy" windows found under other settings
        are dropped (so the next query looks again)."""
        if self.failure_tag == tag or (self.error_id is None and not self.negative_until):
            return self
        return replace(
            self, negative_until=0.0, error_id=None, fetch_failed_at=0.0, failure_tag=tag
        )

    def expires_at(self) -> float:
        """When ``policy`` stops being valid (0 without a policy)."""
        if self.policy is None:
            return 0.0
        return self.fetched_at + self.policy.max_age

    def policy_valid(self, now: float) -> bool:
        """RFC 8461 §3.3: valid while time since fetch has not reached ``max_age``."""
        return self.policy is not None and self.expires_at() > now

    def refresh_due_at(self) -> float:
        """When the policy should be fetched again regardless of the id (0 without one)."""
        if self.policy is None:
            return 0.0
        return self.fetched_at + min(self.policy.max_age / 2, PROACTIVE_REFRESH_S)

    def fetch_blocked_until(self, record_id: str, fetch_backoff: float) -> float:
        """End of the fetch backoff for ``record_id`` (0 when a fetch may run now)."""
        if self.error_id != record_id:
            return 0.0
        return self.fetch_failed_at + fetch_backoff

    def keep_until(self) -> float:
        """When a cache may forget this state: nothing in it is useful after that."""
        return max(self.expires_at(), self.negative_until)

    def to_json(self) -> dict[str, Any]:
        """The state as JSON values; the policy as its text and its parsed fields
        (``policy_mode``, ``policy_max_age``, ``policy_mx``), so a decode need not parse."""
        policy = self.policy
        return {
            "policy": None if policy is None else policy.text,
            "policy_mode": None if policy is None else policy.mode.value,
            "policy_max_age": None if policy is None else policy.max_age,
            "policy_mx": None if policy is None else list(policy.mx),
            "policy_id": self.policy_id,
            "fetched_at": self.fetched_at,
            "record_id": self.record_id,
            "checked_at": self.checked_at,
            "negative_until": self.negative_until,
            "error": self.error,
            "error_kind": self.error_kind,
            "error_at": self.error_at,
            "error_id": self.error_id,
            "fetch_failed_at": self.fetch_failed_at,
            "failure_tag": self.failure_tag,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StsState:
        """Rebuild a state written by ``to_json``.

        The policy comes back from its stored fields, unparsed: a decode is on the path of
        every query answered from a cache, and a parse costs time linear in the policy
        (thousands of ``mx`` lines are possible). A state written before the fields were
        stored has only the text, which is parsed then, once: the next store writes both.

        Raises:
            ValueError: the data is not a state this version wrote.
        """
        if not isinstance(data, dict):
            raise ValueError("MTA-STS state must be a JSON object")
        policy = _policy(data)
        policy_id = _opt_str(data, "policy_id")
        record_id = _opt_str(data, "record_id")
        if record_id == policy_id:
            record_id = policy_id  # the usual case: one string for both, in every entry
        error = _opt_str(data, "error")
        state = cls(
            policy=policy,
            policy_id=policy_id,
            fetched_at=_time(data, "fetched_at"),
            record_id=record_id,
            checked_at=_time(data, "checked_at"),
            negative_until=_time(data, "negative_until"),
            # The same few failure texts in many cached domains: one copy each.
            error=None if error is None else sys.intern(error),
            error_kind=_error_kind(data),
            error_at=_time(data, "error_at"),
            error_id=_opt_str(data, "error_id"),
            fetch_failed_at=_time(data, "fetch_failed_at"),
            failure_tag=_opt_str(data, "failure_tag") or "",
        )
        if (state.policy is None) != (state.policy_id is None):
            raise ValueError("policy and policy_id must both be set or both be null")
        return state


@dataclass(frozen=True, slots=True)
class StsView:
    """What to do with MTA-STS for one query, derived from a state and the time.

    Attributes:
        policy: the policy to apply now (valid and unexpired, any mode), or None.
        freshness: whether to answer from this view, and whether to refresh.
        reason: short text for logs and explain output.
        dns_failed: no policy applies because the last TXT lookup failed with a DNS error;
            the caller may answer TEMP or NOTFOUND as configured.
        policy_id: the TXT id ``policy`` was fetched under.
        expires_at: when ``policy`` expires (0 without a policy).
    """

    policy: Policy | None
    freshness: Freshness
    reason: str
    dns_failed: bool = False
    policy_id: str | None = None
    expires_at: float = 0.0


def sts_view(
    state: StsState | None, now: float, *, recheck_interval: float, tag: str = ""
) -> StsView:
    """Decide what a query may use now.

    Args:
        state: the cached state, or None when nothing is cached.
        now: the current time (epoch seconds).
        recheck_interval: seconds between TXT id checks while a policy is valid.
        tag: the current lookup settings (``StsState.current``).

    Returns:
        FRESH with the valid policy; RECHECK with the valid policy when the id check or the
        proactive refresh is due; FRESH without a policy while a "no policy" result is
        believed; STALE when there is no state or nothing believable in it.
    """
    if state is None:
        return StsView(None, Freshness.STALE, "nothing cached")
    state = state.current(tag)
    if state.policy is not None and state.policy_valid(now):
        policy = state.policy
        due = state.refresh_due_at()
        if now >= state.checked_at + recheck_interval:
            freshness, why = Freshness.RECHECK, "; id check due"
        elif now >= due and state.checked_at < due:
            freshness, why = Freshness.RECHECK, "; proactive refresh due"
        else:
            freshness, why = Freshness.FRESH, ""
        left = state.expires_at() - now
        reason = f"{policy.mode.value} policy id {state.policy_id}, expires in {_secs(left)}{why}"
        if state.error is not None and state.error_kind != StsErrorKind.NO_RECORD:
            reason += f" (last refresh: {state.error})"
        return StsView(
            policy,
            freshness,
            reason,
            policy_id=state.policy_id,
            expires_at=state.expires_at(),
        )
    dns_failed = state.error_kind == StsErrorKind.DNS
    reason = _no_policy_reason(state)
    if now < state.negative_until:
        return StsView(None, Freshness.FRESH, reason, dns_failed=dns_failed)
    return StsView(None, Freshness.STALE, f"{reason}; look up again", dns_failed=dns_failed)


def fresh_until(state: StsState | None, now: float, *, recheck_interval: float) -> float:
    """Until when ``sts_view`` keeps giving the same FRESH view (``now`` if it is not FRESH).

    Lets a caller reuse an answer derived from the view without asking again.
    """
    if state is None:
        return now
    if state.policy is not None and state.policy_valid(now):
        until = min(state.checked_at + recheck_interval, state.expires_at())
        due = state.refresh_due_at()
        if state.checked_at < due:
            until = min(until, due)
        return max(until, now)
    if now < state.negative_until:
        return state.negative_until
    return now


def _no_policy_reason(state: StsState) -> str:
    parts: list[str] = []
    if state.error_kind == StsErrorKind.NO_RECORD:
        parts.append("no MTA-STS record")
    elif state.error is not None:
        parts.append(state.error)
    if state.policy is not None:
        parts.append(f"policy id {state.policy_id} expired")
    return "; ".join(parts) or "no policy"


def _secs(seconds: float) -> str:
    return f"{max(0, math.floor(seconds))}s"


def _policy(data: dict[str, Any]) -> Policy | None:
    """The stored policy (see ``StsState.from_json``), or None."""
    text = data.get("policy")
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError("policy: must be the policy text")
    mode = data.get("policy_mode")
    if mode is None:  # written before the fields were stored
        try:
            return parse_policy(text)
        except PolicySyntaxError as exc:
            raise ValueError(f"policy: cached policy no longer parses: {exc}") from None
    mx = data.get("policy_mx")
    if not isinstance(mode, str) or not isinstance(mx, list):
        raise ValueError("policy_mode, policy_mx: must be a string and a list")
    return from_fields(mode, data.get("policy_max_age"), mx, text)


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key}: must be a string or null")
    return value


def _error_kind(data: dict[str, Any]) -> StsErrorKind | None:
    value = _opt_str(data, "error_kind")
    if value is None:
        return None
    try:
        return StsErrorKind(value)
    except ValueError:
        raise ValueError(f"error_kind: unknown kind {value!r}") from None


def _time(data: dict[str, Any], key: str) -> float:
    value = data.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key}: must be a number")
    return float(value) if value else 0.0  # unset times: one shared 0.0, not one per entry
