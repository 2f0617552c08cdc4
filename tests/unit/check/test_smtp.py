from __future__ import annotations

from tests.unit.check.helpers import NOW, Chain, done, failed
from tlspolicy.check.findings import Status
from tlspolicy.check.session import Stage
from tlspolicy.check.smtp import check_not_probed, check_probe

HOST = "mx.example.com"


def judge(result, *, pkix: Status = Status.ERROR):  # type: ignore[no-untyped-def]
    return check_probe(result, now=NOW, pkix_status=pkix, trust_source="system store")


def test_smtp_good_host_gets_one_summary_line() -> None:
    findings, facts = judge(done(HOST, Chain(HOST, days=60)))
    assert [(f.check, f.status) for f in findings] == [("smtp.starttls", Status.OK)]
    assert findings[0].subject == f"{HOST}[192.0.2.1]"
    assert (
        "TLSv1.3, trusted certificate for mx.example.com, expires in 60 days" in findings[0].message
    )
    assert facts is not None and facts["days_left"] == 60


def test_smtp_expiry_thresholds() -> None:
    soon, _ = judge(done(HOST, Chain(HOST, days=13)))
    assert [(f.check, f.status) for f in soon] == [("smtp.expiry", Status.WARNING)]
    assert "expires in 13 days" in soon[0].message
    assert judge(done(HOST, Chain(HOST, days=14)))[0][0].status is Status.OK
    expired, facts = judge(done(HOST, Chain(HOST, days=-3), verify_error="certificate has expired"))
    assert [(f.check, f.status) for f in expired] == [("smtp.expiry", Status.ERROR)]  # one line
    assert "(3 days ago)" in expired[0].message and facts is not None
    early, _ = judge(done(HOST, Chain(HOST, start_days=2)))
    assert [(f.check, f.status) for f in early] == [("smtp.expiry", Status.ERROR)]


def test_smtp_pkix_failures_follow_the_given_status() -> None:
    wrong = done(HOST, Chain("other.example.com"), verify_error="self-signed certificate")
    findings, _ = judge(wrong, pkix=Status.WARNING)
    assert [(f.check, f.status) for f in findings] == [
        ("smtp.chain", Status.WARNING),
        ("smtp.name", Status.WARNING),
    ]
    assert (
        findings[0].message
        == "certificate chain not trusted (system store): self-signed certificate"
    )
    assert findings[1].message == "certificate is for other.example.com, not mx.example.com"
    assert {f.status for f in judge(wrong)[0]} == {Status.ERROR}


def test_smtp_dialogue_failures_are_errors() -> None:
    cases = {
        Stage.CONNECT: ("connection refused", "cannot connect to port 25: connection refused"),
        Stage.STARTTLS: ("STARTTLS is not offered", "STARTTLS is not offered: MTA-STS"),
        Stage.HANDSHAKE: ("wrong version number", "TLS handshake failed: wrong version number"),
        Stage.BANNER: ("greeting 554 go away", "SMTP dialogue failed at banner: greeting 554"),
    }
    for stage, (error, words) in cases.items():
        (finding,), facts = judge(failed(HOST, stage, error))
        assert finding.status is Status.ERROR and facts is None
        assert finding.message.startswith(words), finding.message


def test_smtp_not_probed_is_skipped() -> None:
    finding = check_not_probed(HOST, ("IPv6",), "no address to probe")
    assert (finding.status, finding.message) == (Status.SKIPPED, "no address to probe (IPv6)")
