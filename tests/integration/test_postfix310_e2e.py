"""End to end with a real Postfix 3.10 (Debian 13) with TLSRPT: our answers, its enforcement, its
datagrams. The lab: ``tests/integration/postfixlab.py``; the domains: ``tests/lab/smtpcases.py``.

One Postfix, one ``tlspolicy serve`` and one set of SMTP sinks serve the whole module. Each
test sends one message per case to a fresh recipient and waits for Postfix's final status line
for it, then for the datagrams (``DatagramCapture.barrier``): no fixed sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.postfixlab import PostfixLab, start_postfix_lab
from tests.lab.scenario import Lab
from tests.lab.smtpcases import GOOD_MX, STS_MX

pytestmark = [pytest.mark.integration, pytest.mark.postfix310]

POLICY_TLSA, POLICY_STS, POLICY_NONE = 1, 2, 9  # libtlsrpt policy-type codes
# What Postfix says when it rejects a policy answer (smtp_tls_policy.c) or cannot use it.
ANSWER_PROBLEMS = re.compile(
    r"invalid attribute|unexpected attribute|malformed attribute|has an unexpected value"
    r"|invalid security level|TLS configuration problem|socketmap server"
)


@pytest.fixture(scope="module")
def plab(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostfixLab]:
    with start_postfix_lab(lab, tmp_path_factory.mktemp("postfix310")) as running:
        yield running


def only(datagrams: list[dict[str, Any]]) -> dict[str, Any]:
    """The single policy of the single datagram a delivery produced."""
    assert len(datagrams) == 1, datagrams
    policies = datagrams[0]["policies"]
    assert len(policies) == 1, datagrams
    policy: dict[str, Any] = policies[0]
    return policy


def test_it_is_postfix_310_with_tlsrpt(plab: PostfixLab) -> None:
    assert plab.postfix.version().startswith("3.10.")
    assert plab.postfix.postconf("-h", "smtp_tlsrpt_enable").strip() == "yes"
    assert not plab.postfix.log_lines(r"TLSRPT support")  # "... will be disabled" warnings


@pytest.mark.parametrize(
    ("domain", "answer", "policy_type", "relay"),
    [
        ("rpt-dane.lab", "OK dane-only", POLICY_TLSA, GOOD_MX),
        ("rpt-danemixed.lab", "OK dane", POLICY_TLSA, GOOD_MX),
        ("rpt-sts.lab", "OK secure match=", POLICY_STS, STS_MX),
        ("rpt-testing.lab", "NOTFOUND", POLICY_NONE, STS_MX),
        ("rpt-none.lab", "NOTFOUND", POLICY_NONE, STS_MX),
    ],
)
def test_postfix_accepts_every_tlsrpt_answer(
    plab: PostfixLab, domain: str, answer: str, policy_type: int, relay: str
) -> None:
    reply = plab.server.request(domain, "QUERYwithTLSRPT")
    assert reply.startswith(answer), reply
    delivery, datagrams = plab.deliver(domain)
    assert delivery.status == "sent", delivery.line
    assert delivery.relay.startswith(f"{relay}["), delivery.line
    assert plab.sinks.for_rcpt(delivery.rcpt)[0].tls
    problems = plab.postfix.log_lines(ANSWER_PROBLEMS.pattern)
    assert not problems, problems
    policy = only(datagrams)
    assert (policy["policy-type"], policy["f"], policy["t"]) == (policy_type, 0, 0)
    assert "failure-details" not in policy
    if policy_type == POLICY_TLSA:
        assert policy["policy-domain"] == GOOD_MX  # the TLSA base domain
        assert [s.split()[:3] for s in policy["policy-string"]] == [["3", "1", "1"]]
    elif policy_type == POLICY_STS:
        assert policy["policy-domain"] == domain
        assert policy["mx-host"] == [STS_MX]
        assert policy["policy-string"] == [
            "version: STSv1", "mode: enforce", f"mx: {STS_MX}", "max_age: 86400"
        ]  # fmt: skip
    else:
        assert policy["policy-domain"] == domain  # 3.10.5+: no-policy-found names the domain
        assert "policy-string" not in policy


def test_sts_mx_patterns_skip_an_uncovered_mx(plab: PostfixLab) -> None:
    """MX 10 rogue.* has a certificate for the covered name; the pattern check skips it."""
    delivery, datagrams = plab.deliver("rpt-stspattern.lab")
    assert delivery.status == "sent", delivery.line
    assert delivery.relay.startswith("mx.rpt-stspattern.lab["), delivery.line
    skipped = plab.postfix.log_lines(
        r"MX name 'rogue\.rpt-stspattern\.lab' does not match STS MX pattern"
        r" for 'rpt-stspattern\.lab'"
    )
    assert skipped, plab.postfix.log()[-2000:]
    assert not [r for r in plab.sinks.received if r.host == "rogue.rpt-stspattern.lab"]
    policy = only(datagrams)  # one session (the covered MX), nothing for the skipped one
    assert (policy["policy-type"], policy["f"]) == (POLICY_STS, 0)
    assert policy["mx-host"] == ["mx.rpt-stspattern.lab"]


@pytest.mark.parametrize(
    ("case", "policy_type", "code", "reason"),
    [
        ("nostarttls", POLICY_STS, 201, None),  # starttls-not-supported
        ("wrongname", POLICY_STS, 202, None),  # certificate-host-mismatch
        ("expired", POLICY_STS, 204, None),  # certificate-expired
        ("untrusted", POLICY_STS, 205, "unable_to_get_local_issuer_certificate"),
        ("selfsigned", POLICY_STS, 205, "self-signed_certificate"),  # validation-failure
        ("danebad", POLICY_TLSA, 203, None),  # certificate-not-trusted: no TLSA matches
    ],
)
def test_misbehaving_mx_gives_a_failure_datagram(
    plab: PostfixLab, case: str, policy_type: int, code: int, reason: str | None
) -> None:
    domain, host = f"rpt-{case}.lab", f"mx.rpt-{case}.lab"
    delivery, datagrams = plab.deliver(domain)
    assert delivery.status == "deferred", delivery.line
    assert not plab.sinks.for_rcpt(delivery.rcpt)
    policy = only(datagrams)
    assert datagrams[0]["pr"] == "v=TLSRPTv1; rua=mailto:tlsrpt@reports.rpt.lab"
    assert (policy["policy-type"], policy["f"], policy["t"]) == (policy_type, 1, 1)
    expected_domain = host if policy_type == POLICY_TLSA else domain
    assert policy["policy-domain"] == expected_domain
    (detail,) = policy["failure-details"]
    assert (detail["c"], detail["n"], detail["r"]) == (code, host, plab.addresses[host])
    assert detail.get("f") == reason
    assert "250-" in detail["h"]  # the EHLO reply, as libtlsrpt passes it on


# How Postfix 3.10 treats candidate answers for an MTA-STS "testing" policy, sent from a
# static table (smtpcases.EXPERIMENTS: "<level> policy_type=sts policy_domain=... mx_host_pattern
# =... { policy_string = ... }"). Each row: MX kind -> (status, datagram or None, its f).
TESTING_ANSWERS = [
    # "may": reported as sts, never enforced, but failures are never reported either: the
    # wrong-name session counts as a success, the plaintext one is not reported at all, and
    # the MX outside mx_host_pattern gets the mail (no match= list, so no pattern check).
    ("may", "good", ("sent", POLICY_STS, 0)),
    ("may", "wrongname", ("sent", POLICY_STS, 0)),
    ("may", "nostarttls", ("sent", None, None)),
    ("may", "rogue", ("sent", POLICY_STS, 0)),
    ("may", "tlsa", ("sent", POLICY_STS, 0)),
    # "encrypt": reported as sts, TLS enforced (201 and deferral), names never checked.
    ("encrypt", "good", ("sent", POLICY_STS, 0)),
    ("encrypt", "wrongname", ("sent", POLICY_STS, 0)),
    ("encrypt", "nostarttls", ("deferred", POLICY_STS, 1)),
    ("encrypt", "rogue", ("sent", POLICY_STS, 0)),
    ("encrypt", "tlsa", ("sent", POLICY_STS, 0)),
    # "dane" (no TLSA at these MX hosts): Postfix falls back to "may" before it sets the
    # TLSRPT policy, so this is "may" again, reported as sts; where TLSA exist it is DANE.
    ("dane", "good", ("sent", POLICY_STS, 0)),
    ("dane", "wrongname", ("sent", POLICY_STS, 0)),
    ("dane", "nostarttls", ("sent", None, None)),
    ("dane", "rogue", ("sent", POLICY_STS, 0)),
    ("dane", "tlsa", ("sent", POLICY_TLSA, 0)),  # DANE: our attributes are ignored
]


@pytest.mark.parametrize(("level", "mx", "expected"), TESTING_ANSWERS)
def test_testing_policy_answers(
    plab: PostfixLab, level: str, mx: str, expected: tuple[str, int | None, int | None]
) -> None:
    status, policy_type, final = expected
    domain = f"rpt-x-{level}-{mx}.lab"
    delivery, datagrams = plab.deliver(domain)
    assert delivery.status == status, delivery.line
    assert not plab.postfix.log_lines(ANSWER_PROBLEMS.pattern)
    if policy_type is None:
        assert datagrams == []
        return
    policy = only(datagrams)
    assert (policy["policy-type"], policy["f"]) == (policy_type, final)
    if policy_type == POLICY_STS:
        assert "mode: testing" in policy["policy-string"]
