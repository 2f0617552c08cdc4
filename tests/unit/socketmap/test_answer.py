from __future__ import annotations

import pytest

from tlspolicy.config import MapProfile
from tlspolicy.dane.result import DaneLevel, DaneResult
from tlspolicy.decision.verdict import Decision, Verdict, decide_dane_first
from tlspolicy.mtasts.policy import Mode, Policy, parse_policy
from tlspolicy.mtasts.state import Freshness, StsView
from tlspolicy.socketmap.answer import format_reply
from tlspolicy.socketmap.connection import MAX_REPLY_BYTES, encode_reply

RFC_EXAMPLE = (
    "version: STSv1\n"
    "mode: enforce\n"
    "mx: mail.example.com\n"
    "mx: *.example.net\n"
    "mx: backupmx.example.com\n"
    "max_age: 604800\n"
)
PLAIN = MapProfile()
TLSRPT = MapProfile(tlsrpt=True)
NO_SNI = MapProfile(servername=False)


def secure(text: str, domain: str = "example.com") -> Decision:
    return Decision(Verdict.SECURE, domain, "enforce", parse_policy(text))


def test_format_reply_secure_plain() -> None:
    assert format_reply(secure(RFC_EXAMPLE), PLAIN) == (
        "OK secure match=mail.example.com:.example.net:backupmx.example.com servername=hostname"
    )


def test_format_reply_secure_without_servername() -> None:
    assert format_reply(secure(RFC_EXAMPLE), NO_SNI) == (
        "OK secure match=mail.example.com:.example.net:backupmx.example.com"
    )


def test_format_reply_tlsrpt_byte_exact() -> None:
    # docs/protocol-notes.md §3.1: the complete reply for the RFC 8461 §3.2 example policy.
    expected = (
        "OK secure match=mail.example.com:.example.net:backupmx.example.com "
        "servername=hostname policy_type=sts policy_domain=example.com "
        "mx_host_pattern=mail.example.com mx_host_pattern=*.example.net "
        "mx_host_pattern=backupmx.example.com { policy_string = version: STSv1 } "
        "{ policy_string = mode: enforce } { policy_string = mx: mail.example.com } "
        "{ policy_string = mx: *.example.net } { policy_string = mx: backupmx.example.com } "
        "{ policy_string = max_age: 604800 }"
    )
    reply = format_reply(secure(RFC_EXAMPLE), TLSRPT)
    assert reply == expected
    assert encode_reply(reply).startswith(b"457:OK secure ")


def test_format_reply_drops_values_with_braces() -> None:
    text = RFC_EXAMPLE + "x-note: a {b} c\n" + "x-ok: fine\n"
    reply = format_reply(secure(text), TLSRPT)
    assert "{b}" not in reply
    assert "{ policy_string = x-ok: fine }" in reply
    assert reply.count("{") == reply.count("}")


def test_format_reply_duplicate_match_names_once() -> None:
    text = "version: STSv1\nmode: enforce\nmx: *.example.net\nmx: example.net\nmax_age: 60\n"
    reply = format_reply(secure(text), PLAIN)
    assert reply == "OK secure match=.example.net:example.net servername=hostname"


def unchecked(text: str, domain: str = "example.com") -> Decision:
    """A policy the parser would cap at ``MAX_MX_PATTERNS`` (mtasts/policy.py), built
    directly: the formatter keeps its own limits and must not rely on the parser's."""
    mx = tuple(line[4:] for line in text.splitlines() if line.startswith("mx: "))
    policy = Policy(Mode.ENFORCE, 86400, mx, text)
    return Decision(Verdict.SECURE, domain, "enforce", policy)


def test_format_reply_huge_policy_keeps_within_limit() -> None:
    mx = "".join(f"mx: host{i:05d}.example.com\n" for i in range(1500))
    text = "version: STSv1\nmode: enforce\n" + mx + "max_age: 86400\n"
    reply = format_reply(unchecked(text), TLSRPT)
    assert len(reply.encode()) <= MAX_REPLY_BYTES
    assert reply.startswith("OK secure match=host00000.example.com:")
    assert reply.count("mx_host_pattern=") == 1500
    assert 1 <= reply.count("{ policy_string =") < 1503
    assert "{ policy_string = version: STSv1 }" in reply
    encode_reply(reply)


def test_format_reply_tlsrpt_that_cannot_fit_falls_back_to_plain_secure() -> None:
    mx = "".join(f"mx: h{i:04d}.example.com\n" for i in range(2900))
    text = "version: STSv1\nmode: enforce\n" + mx + "max_age: 86400\n"
    assert len(text) < 65536  # fits the fetch limit, but not with TLSRPT attributes
    reply = format_reply(unchecked(text), TLSRPT)
    assert reply.startswith("OK secure match=h0000.example.com:")
    assert reply.endswith("servername=hostname")
    assert "policy_type" not in reply
    encode_reply(reply)


def test_format_reply_too_large_for_any_reply_is_temp() -> None:
    # Only a policy beyond the 64 KiB fetch limit can get here; the formatter must not trust it.
    mx = "".join(f"mx: {'h' * 50}{i:05d}.{'e' * 50}.example.com\n" for i in range(1000))
    text = "version: STSv1\nmode: enforce\n" + mx + "max_age: 86400\n"
    reply = format_reply(unchecked(text), TLSRPT)
    assert reply.startswith("TEMP ")


@pytest.mark.parametrize(
    ("verdict", "reply"),
    [
        pytest.param(Verdict.DANE_ONLY, "OK dane-only", id="dane-only"),
        pytest.param(Verdict.DANE, "OK dane", id="dane"),
        pytest.param(Verdict.NOTFOUND, "NOTFOUND ", id="notfound"),
        pytest.param(Verdict.TEMP, "TEMP MX lookup failed: servfail", id="temp"),
        pytest.param(Verdict.PERM, "PERM MX lookup failed: servfail", id="perm"),
    ],
)
def test_format_reply_levels(verdict: Verdict, reply: str) -> None:
    for profile in (PLAIN, TLSRPT):
        decision = Decision(verdict, "example.com", "MX lookup failed:\nservfail")
        assert format_reply(decision, profile) == reply


def view(text: str | None, *, dns_failed: bool = False) -> StsView:
    policy = parse_policy(text) if text else None
    return StsView(policy, Freshness.FRESH, "test", dns_failed=dns_failed)


TESTING = RFC_EXAMPLE.replace("enforce", "testing")
NONE_MODE = "version: STSv1\nmode: none\nmax_age: 60\n"


@pytest.mark.parametrize(
    ("dane", "sts", "profile", "verdict"),
    [
        pytest.param(
            DaneLevel.DANE_ONLY, view(RFC_EXAMPLE), PLAIN, Verdict.DANE_ONLY, id="dane-wins"
        ),
        pytest.param(DaneLevel.DANE, view(RFC_EXAMPLE), PLAIN, Verdict.DANE, id="dane-wins-2"),
        pytest.param(DaneLevel.TEMP, view(RFC_EXAMPLE), PLAIN, Verdict.TEMP, id="temp-no-fallback"),
        pytest.param(DaneLevel.NONE, view(RFC_EXAMPLE), PLAIN, Verdict.SECURE, id="sts-enforce"),
        pytest.param(DaneLevel.NONE, view(TESTING), PLAIN, Verdict.NOTFOUND, id="sts-testing"),
        pytest.param(
            DaneLevel.NONE,
            view(TESTING),
            MapProfile(strict_testing=True),
            Verdict.SECURE,
            id="sts-testing-strict",
        ),
        pytest.param(DaneLevel.NONE, view(NONE_MODE), PLAIN, Verdict.NOTFOUND, id="sts-none"),
        pytest.param(DaneLevel.NONE, view(None), PLAIN, Verdict.NOTFOUND, id="no-policy"),
        pytest.param(
            DaneLevel.NONE, view(None, dns_failed=True), PLAIN, Verdict.NOTFOUND, id="dns-failed"
        ),
    ],
)
def test_decide_dane_first(
    dane: DaneLevel, sts: StsView, profile: MapProfile, verdict: Verdict
) -> None:
    result = DaneResult(dane, "why", 300)
    assert decide_dane_first("example.com", result, sts, profile).verdict is verdict


def test_decide_dns_failure_temp_when_configured() -> None:
    result = DaneResult(DaneLevel.NONE, "no MX", 300)
    failed = view(None, dns_failed=True)
    decision = decide_dane_first("example.com", result, failed, PLAIN, temp_on_dns_failure=True)
    assert decision.verdict is Verdict.TEMP
