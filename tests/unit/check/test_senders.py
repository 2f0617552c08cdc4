from __future__ import annotations

from tests.unit.check.helpers import Chain, done, failed
from tlspolicy.check.findings import Finding, Section, Status
from tlspolicy.check.senders import HostVerdict, check_outcome, check_senders, host_verdict
from tlspolicy.check.session import Stage
from tlspolicy.config import parse_config
from tlspolicy.decision.verdict import Decision, Verdict
from tlspolicy.mtasts.policy import parse_policy


def one(verdict: Verdict, hosts: list[HostVerdict], **kw: bool) -> Finding:
    (finding,) = check_senders(
        verdict,
        "OK x",
        "why",
        hosts,
        null_mx=kw.get("null_mx", False),
        probed=kw.get("probed", True),
    )
    return finding


def test_senders_dane_defers_when_no_host_matches() -> None:
    bad = HostVerdict("a", True, True, False, None, tlsa_usable=True)
    good = HostVerdict("b", True, True, True, None, tlsa_usable=True)
    assert one(Verdict.DANE_ONLY, [bad]).status is Status.ERROR
    partial = one(Verdict.DANE, [good, bad])
    assert partial.status is Status.WARNING and "via b and skips a" in partial.message
    assert one(Verdict.DANE_ONLY, [good]).status is Status.OK
    unusable = one(Verdict.DANE, [HostVerdict("c", True, True, None, None)])
    assert unusable.status is Status.WARNING and "does not authenticate" in unusable.message


def test_senders_mta_sts_needs_coverage_and_pkix() -> None:
    good = HostVerdict("a", True, True, None, True)
    uncovered = HostVerdict("b", True, True, None, False)
    assert one(Verdict.SECURE, [good]).status is Status.OK
    assert one(Verdict.SECURE, [good, uncovered]).status is Status.WARNING
    assert one(Verdict.SECURE, [uncovered]).status is Status.ERROR
    assert one(Verdict.SECURE, [uncovered], probed=False).status is Status.OK


def test_senders_other_verdicts() -> None:
    assert one(Verdict.NOTFOUND, []).status is Status.WARNING
    assert one(Verdict.TEMP, []).status is Status.ERROR
    assert one(Verdict.NOTFOUND, [], null_mx=True).status is Status.OK


def test_senders_host_verdict_from_probes_and_findings() -> None:
    chain = Chain("mx.example.com")
    policy = parse_policy("version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n")
    probes = [done("mx.example.com", chain)]
    assert host_verdict("mx.example.com", probes, policy, True, [], tlsa_usable=True) == (
        HostVerdict("mx.example.com", True, True, True, True, tlsa_usable=True)
    )
    bad_name = Finding(Section.SMTP, "smtp.name", Status.ERROR, "x", "mx.example.com[192.0.2.1]")
    assert host_verdict("mx.example.com", probes, None, None, [bad_name]).pkix is False
    refused = [failed("mx.example.com", Stage.CONNECT, "refused")]
    assert host_verdict("mx.example.com", refused, None, None, []).tls is False
    assert host_verdict("mx.example.com", [], None, None, []).pkix is None


def test_senders_check_outcome_renders_the_reply_postfix_gets() -> None:
    profile = parse_config({}).profile("QUERY")
    policy = parse_policy("version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 86400\n")
    decision = Decision(Verdict.SECURE, "example.com", "MTA-STS policy mode enforce", policy)
    good = HostVerdict("mx.example.com", True, True, None, True)
    findings, facts = check_outcome(
        profile, "tlspolicy", decision, [good], null_mx=False, probed=True
    )
    assert facts["reply"].startswith("OK secure match=.example.com")
    assert (facts["verdict"], findings[0].status) == ("secure", Status.OK)
    missing, facts = check_outcome(None, "nope", decision, [good], null_mx=False, probed=True)
    assert (missing[0].status, facts) == (Status.ERROR, {"map": "nope"})
