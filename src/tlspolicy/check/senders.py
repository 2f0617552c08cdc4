"""What senders will do: our server's answer (the real decision code) and Postfix's reaction.

Pure. The reply comes from ``PolicyService.resolve`` + ``socketmap.answer.render`` (run by
``check.run``); this module combines it with the per-host results of the live checks:
* ``dane-only`` / ``dane``: Postfix authenticates hosts with usable TLSA against them and
  defers rather than deliver to a host whose chain matches none (RFC 7672 §9.1);
* ``secure`` (MTA-STS enforce): Postfix delivers only to MX hosts that match a policy
  pattern (3.10.5+) and present a trusted certificate for their name (RFC 8461 §4, §5);
* ``NOTFOUND``: main.cf's level applies, usually opportunistic ``may`` (cleartext fallback);
* ``TEMP``: Postfix defers the mail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tlspolicy.check.findings import Finding, Section, Status
from tlspolicy.check.session import ProbeResult, Stage
from tlspolicy.config import MapProfile
from tlspolicy.decision.verdict import Decision, Verdict
from tlspolicy.mtasts.policy import Policy
from tlspolicy.socketmap.answer import render


@dataclass(frozen=True, slots=True)
class HostVerdict:
    """One MX host as the live checks saw it (None: not known, e.g. ``--no-smtp``)."""

    host: str
    tls: bool | None  # some address completed STARTTLS
    pkix: bool | None  # trusted chain and matching name on every address that answered
    dane: bool | None  # usable TLSA matched (None: no usable TLSA, or no TLS session)
    covered: bool | None  # matched by an MTA-STS pattern (None: no policy)
    tlsa_usable: bool = False  # secure TLSA with at least one usable record


def check_outcome(
    profile: MapProfile | None,
    map_name: str,
    decision: Decision,
    hosts: Sequence[HostVerdict],
    *,
    null_mx: bool,
    probed: bool,
) -> tuple[list[Finding], dict[str, Any]]:
    """The server's decision as Postfix receives it (``render``), judged; and its facts."""
    if profile is None:
        message = f"unknown map {map_name}"
        return [_f("senders.postfix", Status.ERROR, message)], {"map": map_name}
    reply = render(decision, profile)
    findings = check_senders(
        decision.verdict, reply.text, decision.reason, hosts, null_mx=null_mx, probed=probed
    )
    facts = {
        "map": map_name,
        "reply": reply.text,
        "verdict": decision.verdict.value,
        "reason": decision.reason,
    }
    return findings, facts


def check_senders(
    verdict: Verdict,
    reply: str,
    reason: str,
    hosts: Sequence[HostVerdict],
    *,
    null_mx: bool,
    probed: bool,
) -> list[Finding]:
    server = f"our server answers {reply.strip()!r}"
    if null_mx:
        return [_f("senders.postfix", Status.OK, f"{server}; the null MX tells senders not to try")]
    if verdict is Verdict.TEMP:
        return [
            _f("senders.postfix", Status.ERROR, f"{server}: Postfix defers the mail ({reason})")
        ]
    if verdict is Verdict.PERM:
        return [_f("senders.postfix", Status.ERROR, f"{server}: Postfix bounces ({reason})")]
    if verdict is Verdict.NOTFOUND:
        message = (
            f"{server} ({reason}): Postfix uses main.cf's level, usually opportunistic TLS "
            "with cleartext fallback; publish MTA-STS enforce or DANE to prevent downgrades"
        )
        return [_f("senders.postfix", Status.WARNING, message)]
    if verdict in (Verdict.DANE, Verdict.DANE_ONLY) and not any(h.tlsa_usable for h in hosts):
        message = (
            f"{server}: every TLSA record is unusable, so Postfix requires TLS but does not "
            "authenticate the server (RFC 7672 §2.2: 'encrypt'); publish a usable 3 1 1 record"
        )
        return [_f("senders.postfix", Status.WARNING, message)]
    if verdict in (Verdict.DANE, Verdict.DANE_ONLY):
        failing = [h.host for h in hosts if h.dane is False]
        passing = [h.host for h in hosts if h.dane is True]
        what = "DANE"
    else:
        failing = [h.host for h in hosts if h.covered is False or h.pkix is False or h.tls is False]
        passing = [h.host for h in hosts if h.covered and h.pkix and h.tls]
        what = "MTA-STS (verified TLS)"
    if not probed:
        message = f"{server}: Postfix delivers only with {what} (live SMTP checks skipped)"
        return [_f("senders.postfix", Status.OK, message)]
    if failing and not passing:
        message = f"{server}: Postfix defers all mail, no MX host passes {what}"
        return [_f("senders.postfix", Status.ERROR, message)]
    if failing:
        message = (
            f"{server}: Postfix delivers with {what} via {', '.join(passing)} and skips "
            f"{', '.join(failing)}"
        )
        return [_f("senders.postfix", Status.WARNING, message)]
    via = f" via {', '.join(passing)}" if passing else ""
    return [_f("senders.postfix", Status.OK, f"{server}: Postfix delivers with {what}{via}")]


def host_verdict(
    host: str,
    probes: Sequence[ProbeResult],
    policy: Policy | None,
    dane: bool | None,
    findings: Sequence[Finding],
    *,
    tlsa_usable: bool = False,
) -> HostVerdict:
    """Summarise one host's live results for ``check_senders``."""
    tls = any(p.stage is Stage.DONE for p in probes) if probes else None
    pkix_bad = any(
        f.section is Section.SMTP
        and f.subject.startswith(f"{host}[")
        and (
            f.check in ("smtp.chain", "smtp.name")
            or (f.check == "smtp.expiry" and f.status is Status.ERROR)
        )
        for f in findings
    )
    pkix = (not pkix_bad and bool(tls)) if probes else None
    covered = policy.matches(host) if policy is not None else None
    return HostVerdict(host, tls, pkix, dane, covered, tlsa_usable)


def _f(check: str, status: Status, message: str) -> Finding:
    return Finding(Section.SENDERS, check, status, message)
