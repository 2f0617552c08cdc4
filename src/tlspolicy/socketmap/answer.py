"""Decisions to socketmap reply payloads: the one place that writes Postfix policy syntax.

Reply grammar: socketmap_table(5) (``OK <data>``, ``NOTFOUND ``, ``TEMP <reason>``,
``PERM <reason>``); policy syntax: ``smtp/smtp_tls_policy.c:tls_policy_lookup_one``
(docs/protocol-notes.md §2.1-§3.1). Rules kept:
- ``NOTFOUND `` keeps its space; an ``OK`` always carries a level;
- MTA-STS ``*.example`` patterns become Postfix ``.example`` in ``match=``
  (docs/protocol-notes.md §2.3), and are passed verbatim in ``mx_host_pattern=`` for
  Postfix >= 3.10.5;
- with TLSRPT, at least one ``policy_string`` and one ``mx_host_pattern`` (Postfix
  3.10.0-3.10.5 dereference NULL otherwise, docs/protocol-notes.md §3.1);
- values containing ``{`` or ``}`` are never sent: Postfix has no escape for them;
- the payload stays within ``MAX_REPLY_BYTES``: policy strings are dropped from the end
  first; if the TLSRPT attributes still do not fit, the plain ``secure match=`` reply is sent
  (still enforcing, as for Postfix < 3.10); if even the match list does not fit, TEMP.
- DANE answers carry no STS attributes: Postfix reports DANE to TLSRPT itself
  (docs/protocol-notes.md §3.2). We never send ``policy_type=no-policy-found``: it needs an
  ``OK <level>`` reply, and any level we chose would override main.cf's
  ``smtp_tls_security_level`` (e.g. turn a main.cf ``dane`` into ``may``); with
  ``NOTFOUND `` Postfix reports ``no-policy-found`` itself (``smtp_tlsrpt_set_ext_policy``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tlspolicy.config import MapProfile
from tlspolicy.decision.verdict import Decision, Verdict
from tlspolicy.mtasts.policy import Policy
from tlspolicy.socketmap.connection import MAX_REPLY_BYTES

NOTFOUND = "NOTFOUND "
_MAX_REASON_CHARS = 200
_TOO_LARGE = "MTA-STS policy too large for a socketmap reply"


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply payload and its metric label (the level for OK, else the status word)."""

    text: str
    kind: str


def render(decision: Decision, profile: MapProfile) -> Reply:
    """The reply for a decision; a policy too large for any reply becomes TEMP."""
    text = format_reply(decision, profile)
    if decision.verdict is Verdict.SECURE and not text.startswith("OK "):
        return Reply(text, Verdict.TEMP.value)
    return Reply(text, decision.verdict.value)


def format_reply(decision: Decision, profile: MapProfile) -> str:
    verdict = decision.verdict
    if decision.override is not None:  # an operator's level, sent as typed (validated)
        return "OK " + decision.override.postfix_level
    if verdict is Verdict.DANE_ONLY:
        return "OK dane-only"
    if verdict is Verdict.DANE:
        return "OK dane"
    if verdict is Verdict.NOTFOUND:
        return NOTFOUND
    if verdict is Verdict.TEMP:
        return temp(decision.reason)
    if verdict is Verdict.PERM:
        return perm(decision.reason)
    if decision.policy is None:  # pragma: no cover - Decision invariant
        raise ValueError("SECURE decision without a policy")
    return format_secure(decision.domain, decision.policy, profile)


def shadowed(reply: Reply, profile: MapProfile) -> Reply:
    """What a ``shadow`` profile sends instead of ``reply``: always ``NOTFOUND `` (Postfix
    applies main.cf); the caller logs and counts ``reply`` as what would have been sent."""
    return Reply(NOTFOUND, Verdict.NOTFOUND.value) if profile.shadow else reply


def temp(reason: str) -> str:
    return "TEMP " + _one_line(reason)


def perm(reason: str) -> str:
    return "PERM " + _one_line(reason)


def match_list(policy: Policy) -> list[str]:
    """MTA-STS patterns as Postfix match names, in policy order, without duplicates."""
    seen: dict[str, None] = {}
    for pattern in policy.mx:
        seen.setdefault(pattern[1:] if pattern.startswith("*.") else pattern, None)
    return list(seen)


def format_secure(domain: str, policy: Policy, profile: MapProfile) -> str:
    parts = ["OK secure", "match=" + ":".join(match_list(policy))]
    if profile.servername:
        parts.append("servername=hostname")
    head = " ".join(parts)
    if not profile.tlsrpt:
        return _fit(head, [], []) or temp(_TOO_LARGE)
    tlsrpt = [f"policy_type=sts policy_domain={domain}"]
    tlsrpt += [f"mx_host_pattern={pattern}" for pattern in policy.mx]
    strings = [
        f"{{ policy_string = {key}: {value} }}"
        for key, value in policy.fields
        if not _has_brace(key) and not _has_brace(value)
    ]
    return _fit(head, tlsrpt, strings) or _fit(head, [], []) or temp(_TOO_LARGE)


def _fit(head: str, attributes: list[str], strings: list[str]) -> str | None:
    """Join, dropping policy strings from the end (keeping one) until the reply fits."""
    base = " ".join([head, *attributes])
    size = len(base.encode())
    kept: list[str] = []
    for item in strings:
        grown = size + 1 + len(item.encode())
        if grown > MAX_REPLY_BYTES:
            break
        kept.append(item)
        size = grown
    if (strings and not kept) or size > MAX_REPLY_BYTES:
        return None
    return " ".join([base, *kept])


def _has_brace(text: str) -> bool:
    return "{" in text or "}" in text


def _one_line(reason: str) -> str:
    text = " ".join(reason.split()) or "temporary failure"
    return text[:_MAX_REASON_CHARS]
