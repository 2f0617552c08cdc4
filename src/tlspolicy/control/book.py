"""Pure override decisions: which override applies to a domain, and what it answers.

Rules:
* The most specific override wins: the domain's own, else the nearest parent that has
  ``subdomains``. Among equals, one added at run time (stored in the cache backend) wins
  over one from the configuration file: it is the newer intent.
* An active ``lookup`` override means "no override": the lookups decide as usual.
* An expired override is matched too (state ``expired``), so that the server can log and
  count it, but it decides nothing.
* An override weakens a domain when the cached facts say DANE applies and the override is
  not a DANE level, or an MTA-STS ``enforce`` policy applies and the override does not
  authenticate (``none``, ``may``, ``encrypt``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from tlspolicy.cache.entry import CacheEntry
from tlspolicy.config.overrides import LOOKUP, Override
from tlspolicy.dane.result import DaneLevel
from tlspolicy.decision.verdict import Decision, Verdict
from tlspolicy.mtasts.policy import Mode

_VERDICTS = {
    "none": Verdict.NO_TLS,
    "may": Verdict.MAY,
    "encrypt": Verdict.ENCRYPT,
    "secure": Verdict.SECURE,
    "dane": Verdict.DANE,
    "dane-only": Verdict.DANE_ONLY,
}
_UNAUTHENTICATED = frozenset({"none", "may", "encrypt"})
_DANE_LEVELS = frozenset({"dane", "dane-only"})


class OverrideState(StrEnum):
    """The metric label of an answer an override matched."""

    ACTIVE = "active"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class OverrideMatch:
    override: Override
    state: OverrideState


def merge(configured: Iterable[Override], stored: Iterable[Override]) -> dict[str, Override]:
    """One override per domain; stored (run-time) ones replace configured ones."""
    merged = {o.domain: o for o in configured}
    merged.update({o.domain: o for o in stored})
    return merged


def find_override(
    overrides: Mapping[str, Override], domain: str, now: float
) -> OverrideMatch | None:
    """The override that applies to ``domain`` at ``now``, or None."""
    if not overrides:
        return None
    found = overrides.get(domain)
    if found is None:
        labels = domain.split(".")
        for start in range(1, len(labels)):
            parent = overrides.get(".".join(labels[start:]))
            if parent is not None and parent.subdomains:
                found = parent
                break
    if found is None:
        return None
    state = OverrideState.ACTIVE if found.active(now) else OverrideState.EXPIRED
    return OverrideMatch(found, state)


def override_decision(match: OverrideMatch | None, domain: str) -> Decision | None:
    """The decision an override makes for ``domain``; None: look up as usual."""
    if match is None or match.state is not OverrideState.ACTIVE:
        return None
    override = match.override
    if override.level == LOOKUP:
        return None
    reason = f"override until {override.describe_until()}: {override.reason or 'no reason given'}"
    return Decision(_VERDICTS[override.level], domain, reason, override=override)


def weakens(override: Override, entry: CacheEntry | None) -> str | None:
    """What protection ``override`` takes away from a domain with these cached facts
    (``"DANE"``, ``"MTA-STS enforce"``), or None."""
    if entry is None or override.level == LOOKUP:
        return None
    dane = entry.dane.result.level if entry.dane is not None else None
    if dane in (DaneLevel.DANE, DaneLevel.DANE_ONLY) and override.level not in _DANE_LEVELS:
        return "DANE"
    policy = entry.sts.policy if entry.sts is not None else None
    if policy is not None and policy.mode is Mode.ENFORCE and override.level in _UNAUTHENTICATED:
        return "MTA-STS enforce"
    return None
