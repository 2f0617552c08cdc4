"""One MTA-STS refresh for one domain: TXT lookup, maybe an HTTPS fetch, a new ``StsState``.

The orchestrator between the pure parts (``record``, ``policy``, ``state``) and the I/O seams
(``DnsClient``, ``Fetcher``). It never raises for DNS, fetch or parse problems: each of them
becomes part of the returned state, and the previous valid policy survives all of them
(RFC 8461 §3.1, §3.3, §5.1). Rules kept here:

* The TXT record at ``_mta-sts.<domain>`` is looked up on every refresh (CNAMEs are followed
  by the DNS adapter, RFC 8461 §8.2).
* A fetch happens when there is no valid policy, when the id differs from the policy's id,
  or when the proactive refresh is due (``StsState.refresh_due_at``) - but never again for
  an id whose fetch failed less than ``fetch_backoff`` ago (RFC 8461 §3.3: five minutes or
  more per id).
* Negative results are cached for the DNS answer's TTL clamped to ``negative_ttl_bounds``;
  a failed TXT lookup with nothing valid cached is believed for the lower bound only, and a
  failed fetch for the rest of its backoff.
* A failed fetch, an invalid policy and a failed TXT lookup are logged at warning with the
  reason and what is applied meanwhile (RFC 8461 §10.2: alert on refresh failures; with
  nothing cached, §5.1 delivers as if there were no policy, which an operator must see).
  Backoff and the negative cache bound these lines to one per domain and id per attempt.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Protocol

from tlspolicy.config.defaults import FETCH_BACKOFF_S
from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.dnsstub.data import TxtRecord
from tlspolicy.dnsstub.trace import note
from tlspolicy.errors import DnsError, FetchError, PolicySyntaxError, RecordSyntaxError
from tlspolicy.mtasts.policy import parse_policy
from tlspolicy.mtasts.record import NoRecordError, select_record
from tlspolicy.mtasts.state import StsErrorKind, StsState

log = logging.getLogger("tlspolicy.mtasts")

NEGATIVE_TTL_BOUNDS_S = (60, 3600)  # our choice: believe "no record" 1 min .. 1 h


class Fetcher(Protocol):
    """Fetches ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (RFC 8461 §3.3).

    ``fetch`` returns the body as text and raises ``tlspolicy.errors.FetchError`` for every
    failure (network, TLS, HTTP status, media type, size, encoding, deadline).
    """

    async def fetch(self, domain: str) -> str: ...


async def refresh_sts(
    domain: str,
    state: StsState | None,
    *,
    dns: DnsClient,
    fetcher: Fetcher,
    now: float,
    fetch_backoff: float = FETCH_BACKOFF_S,
    negative_ttl_bounds: tuple[int, int] = NEGATIVE_TTL_BOUNDS_S,
    tag: str = "",
) -> StsState:
    """Look at the domain's MTA-STS record (and policy, if needed) and return the new state.

    Args:
        domain: the policy domain, a lowercase A-label name without trailing dot.
        state: what is cached for the domain, or None.
        dns: the resolver seam.
        fetcher: the HTTPS seam.
        now: the current time (epoch seconds); it becomes ``checked_at`` and, after a
            successful fetch, ``fetched_at``.
        fetch_backoff: seconds before an id whose fetch failed is fetched again.
        negative_ttl_bounds: (min, max) seconds a "no policy" result is believed.
        tag: the current lookup settings; failures found now are recorded under it, and
            those found under other settings are forgotten (``StsState.current``).

    Returns:
        the new state. Errors are recorded in ``error``/``error_kind``; a valid cached
        policy is kept through all of them.
    """
    old = (state if state is not None else StsState()).current(tag)
    old = replace(old, failure_tag=tag)  # what this refresh finds, it finds under ``tag``
    low, high = negative_ttl_bounds
    valid = old.policy_valid(now)
    try:
        answer = await dns.query(f"_mta-sts.{domain}", "TXT")
    except DnsError as exc:
        note(f"MTA-STS TXT lookup for {domain} failed: {exc}")
        log.warning("%s: MTA-STS TXT lookup failed: %s; %s", domain, exc, _meanwhile(old, now))
        return replace(
            old,
            checked_at=now,
            negative_until=old.negative_until if valid else now + low,
            error=f"TXT lookup failed: {exc}",
            error_kind=StsErrorKind.DNS,
            error_at=now,
        )
    try:
        record = select_record([r for r in answer.records if isinstance(r, TxtRecord)])
    except RecordSyntaxError as exc:
        kind = StsErrorKind.NO_RECORD if isinstance(exc, NoRecordError) else StsErrorKind.RECORD
        note(f"MTA-STS record for {domain}: {exc}")
        return replace(
            old,
            record_id=None,
            checked_at=now,
            negative_until=now + min(max(answer.ttl, low), high),
            error=str(exc) if kind is StsErrorKind.NO_RECORD else f"bad TXT record: {exc}",
            error_kind=kind,
            error_at=now,
        )
    record_id = record.id
    same_id = valid and old.policy_id == record_id
    if same_id and now < old.refresh_due_at():
        note(f"MTA-STS id {record_id} unchanged; cached policy kept")
        return replace(
            old, record_id=record_id, checked_at=now, error=None, error_kind=None, error_at=0.0
        )
    blocked_until = old.fetch_blocked_until(record_id, fetch_backoff)
    if now < blocked_until:
        note(f"MTA-STS fetch for id {record_id} backs off until {blocked_until:.0f}")
        fetch_kinds = (StsErrorKind.FETCH, StsErrorKind.POLICY)
        recorded = old.error_kind in fetch_kinds
        return replace(
            old,
            record_id=record_id,
            checked_at=now,
            negative_until=old.negative_until if valid else blocked_until,
            error=old.error if recorded else f"policy fetch for id {record_id} failed recently",
            error_kind=old.error_kind if recorded else StsErrorKind.FETCH,
            error_at=old.error_at if recorded else old.fetch_failed_at,
        )
    why = "proactive refresh" if same_id else f"id {record_id}"
    note(f"MTA-STS fetch for {domain} ({why})")
    try:
        policy = parse_policy(await fetcher.fetch(domain))
    except (FetchError, PolicySyntaxError) as exc:
        kind = StsErrorKind.FETCH if isinstance(exc, FetchError) else StsErrorKind.POLICY
        label = "policy fetch failed" if kind is StsErrorKind.FETCH else "invalid policy"
        note(f"MTA-STS {label} for {domain}: {exc}")
        log.warning(
            "%s: MTA-STS %s for id %s: %s; %s; no new fetch for this id for %.0fs",
            domain,
            label,
            record_id,
            exc,
            _meanwhile(old, now),
            fetch_backoff,
        )
        return replace(
            old,
            record_id=record_id,
            checked_at=now,
            negative_until=old.negative_until if valid else now + fetch_backoff,
            error=f"{label}: {exc}",
            error_kind=kind,
            error_at=now,
            error_id=record_id,
            fetch_failed_at=now,
        )
    note(f"MTA-STS policy id {record_id}: mode {policy.mode.value}, max_age {policy.max_age}")
    for change in policy.notes:  # once per fetched policy: a cached one has none
        note(f"MTA-STS policy id {record_id}: {change}")
        log.warning("%s: MTA-STS policy id %s: %s", domain, record_id, change)
    # No negative window after a success: once max_age is over, the next use fetches again
    # (coalesced per domain) instead of answering "no policy" for a while, which would fail
    # open for policies with a very small max_age (RFC 8461 §3.3).
    return StsState(
        policy=policy,
        policy_id=record_id,
        fetched_at=now,
        record_id=record_id,
        checked_at=now,
        negative_until=0.0,
    )


def _meanwhile(old: StsState, now: float) -> str:
    """What is applied while the failure lasts, for the warning."""
    if old.policy is not None and old.policy_valid(now):
        left = old.expires_at() - now
        return (
            f"cached {old.policy.mode.value} policy id {old.policy_id} kept "
            f"(expires in {left:.0f}s)"
        )
    return "no policy applied (RFC 8461 §5.1: deliver as if the domain had none)"
