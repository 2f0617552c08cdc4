"""The DANE-first decision (RFC 8461 §2, RFC 7672): combine the two branches into one verdict.

Pure: it takes the DANE result and the MTA-STS view and returns a ``Decision``. Rules:
1. DANE TEMP → TEMP. A failure that could hide DANE never falls back to MTA-STS.
2. ``dane-only`` / ``dane`` → that level; MTA-STS is not consulted (RFC 8461 §2: MTA-STS must
   not override DANE).
3. DANE says no → the MTA-STS policy decides: ``enforce`` (or ``testing`` with the profile's
   ``strict_testing``) → ``secure``; ``testing``/``none``/no policy → no policy.
4. No valid policy because the TXT lookup failed → no policy, or TEMP when the operator
   chose ``mta_sts.dns_failure: temp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tlspolicy.config import MapProfile
from tlspolicy.config.overrides import Override
from tlspolicy.dane.result import DaneLevel, DaneResult
from tlspolicy.mtasts.policy import Mode, Policy
from tlspolicy.mtasts.state import StsView


class Verdict(StrEnum):
    DANE_ONLY = "dane-only"
    DANE = "dane"
    SECURE = "secure"  # MTA-STS enforce
    NOTFOUND = "notfound"  # no policy: Postfix applies its own default
    TEMP = "temp"
    PERM = "perm"
    # Only an operator override answers these (``control.book``).
    MAY = "may"
    ENCRYPT = "encrypt"
    NO_TLS = "none"  # the Postfix level "none"


# The verdicts answered ``OK <level>`` (a policy for Postfix); the others are
# ``NOTFOUND``, ``TEMP`` and ``PERM``.
OK_VERDICTS = frozenset(
    {Verdict.DANE_ONLY, Verdict.DANE, Verdict.SECURE, Verdict.MAY, Verdict.ENCRYPT, Verdict.NO_TLS}
)


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    domain: str
    reason: str
    policy: Policy | None = None  # the MTA-STS policy behind a SECURE verdict
    override: Override | None = None  # the operator override that decided, if one did


def decide_dane_first(
    domain: str,
    dane: DaneResult,
    sts: StsView | None,
    profile: MapProfile,
    *,
    temp_on_dns_failure: bool = False,
) -> Decision:
    """Combine the branches. ``sts`` may be None only when ``dane`` alone decides."""
    if dane.level is DaneLevel.TEMP:
        return Decision(Verdict.TEMP, domain, dane.reason)
    if dane.level is DaneLevel.DANE_ONLY:
        return Decision(Verdict.DANE_ONLY, domain, dane.reason)
    if dane.level is DaneLevel.DANE:
        return Decision(Verdict.DANE, domain, dane.reason)
    if sts is None:
        raise ValueError("MTA-STS view required when DANE does not apply")
    return decide_sts(domain, sts, profile, temp_on_dns_failure=temp_on_dns_failure)


def decide_sts(
    domain: str, sts: StsView, profile: MapProfile, *, temp_on_dns_failure: bool = False
) -> Decision:
    policy = sts.policy
    if policy is None:
        if sts.dns_failed and temp_on_dns_failure:
            return Decision(Verdict.TEMP, domain, f"MTA-STS lookup failed: {sts.reason}")
        return Decision(Verdict.NOTFOUND, domain, sts.reason or "no MTA-STS policy")
    if policy.mode is Mode.ENFORCE:
        return Decision(Verdict.SECURE, domain, "MTA-STS policy mode enforce", policy)
    if policy.mode is Mode.TESTING and profile.strict_testing:
        return Decision(Verdict.SECURE, domain, "MTA-STS mode testing (strict_testing)", policy)
    return Decision(Verdict.NOTFOUND, domain, f"MTA-STS policy mode {policy.mode.value}")
