"""``tlspolicy check`` against the real lab: NSD + validating Unbound, the HTTPS policy hosts,
and aiosmtpd sinks with STARTTLS on the lab MX addresses (host loopback, one free port that
``check --port`` is given). Each test asserts the exact verdict and exit status."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.lab.checkcases import LONG_ID, SOON_DAYS
from tests.lab.checksinks import CheckSinks
from tests.lab.scenario import Lab
from tests.lab.zones import tlsa_value
from tests.schemas.check_report import validate_check_report
from tlspolicy.cli.main import main

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sinks(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CheckSinks]:
    running = CheckSinks(tmp_path_factory.mktemp("check-sinks"), lab)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def config(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lab.write_config(tmp_path_factory.mktemp("check") / "tlspolicy.yml")


def check_args(lab: Lab, sinks: CheckSinks, config: Path, domain: str, *extra: str) -> list[str]:
    return [
        "check", domain, "-c", str(config), "--ca-file", str(lab.ca_file),
        "--port", str(sinks.port), "--timeout", "5", *extra,
    ]  # fmt: skip


def run_json(
    capsys: pytest.CaptureFixture[str],
    lab: Lab,
    sinks: CheckSinks,
    config: Path,
    domain: str,
    *extra: str,
) -> tuple[int, dict[str, Any]]:
    status = main(check_args(lab, sinks, config, domain, "--json", *extra))
    report = json.loads(capsys.readouterr().out)
    validate_check_report(report)
    assert report["exit_status"] == status
    return status, report


def findings(report: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [f for s in report["sections"] for f in s["findings"] if f["check"] == check]


def statuses(report: dict[str, Any], check: str) -> list[str]:
    return [f["status"] for f in findings(report, check)]


def test_check_good_mta_sts_domain_is_all_green(capsys, lab, sinks, config) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    status, report = run_json(capsys, lab, sinks, config, "rpt-sts.lab")
    assert time.monotonic() - started < 2.0  # issue 13: an all-green table in under 2 s
    assert (status, report["status"], report["first_fix"]) == (0, "ok", None)
    assert report["counts"]["warning"] == report["counts"]["error"] == 0
    assert statuses(report, "smtp.starttls") == ["ok"]
    assert statuses(report, "mta-sts-policy.mx-coverage") == ["ok"]
    assert report["facts"]["verdict"] == "secure"
    assert report["facts"]["reply"].startswith("OK secure match=mx.rpt-sts.lab")
    assert [c["host"] for c in report["facts"]["certificates"]] == ["mx.rpt-sts.lab"]


def test_check_dane_domain_with_matching_tlsa_is_all_green(capsys, lab, sinks, config) -> None:  # type: ignore[no-untyped-def]
    status, report = run_json(capsys, lab, sinks, config, "chk-dane.lab")
    assert (status, report["first_fix"]) == (0, None)
    (match,) = findings(report, "dane.match")
    assert (match["status"], match["subject"]) == ("ok", "mx.chk-dane.lab")
    assert "DANE-EE" in match["message"]
    assert statuses(report, "dane.domain") == ["ok"]
    assert report["facts"]["verdict"] == "dane-only"


def test_check_dane_ta_matches_the_issuing_ca_in_the_chain(
    capsys, fresh_lab, sinks, config
) -> None:  # type: ignore[no-untyped-def]
    ca = x509.load_pem_x509_certificate(fresh_lab.https.ca.cert_pem.bytes())
    digest = hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).digest()
    fresh_lab.dns.set_records(
        "_25._tcp.mx.chk-danta.lab",
        "TLSA",
        [tlsa_value(2, 0, 1, digest), tlsa_value(3, 1, 1, bytes(32))],  # CA + a mismatch
    )
    fresh_lab.dns.apply()
    status, report = run_json(capsys, fresh_lab, sinks, config, "chk-danta.lab")
    assert (status, report["first_fix"]) == (0, None)
    (match,) = findings(report, "dane.match")
    assert match["status"] == "ok" and "DANE-TA Cert SHA2-256" in match["message"]
    assert any("matches chain certificate 1" in e for e in match["evidence"])


def test_check_reports_ipv4_and_ipv6_separately(capsys, lab, sinks, config) -> None:  # type: ignore[no-untyped-def]
    status, report = run_json(capsys, lab, sinks, config, "chk-v6.lab")
    assert status == 2
    (good,) = findings(report, "smtp.starttls")
    assert good["status"] == "ok" and good["subject"].startswith("mx.chk-v6.lab[127.0.0.")
    first = report["first_fix"]
    assert (first["check"], first["subject"]) == ("smtp.connect", "mx.chk-v6.lab[::1]")
    assert first["message"] == f"cannot connect to port {sinks.port}: connection refused"
    assert "IPv6" in first["evidence"][0]
    status4, only4 = run_json(capsys, lab, sinks, config, "chk-v6.lab", "--ipv4")
    assert (status4, findings(only4, "smtp.connect")) == (0, [])
    _, only6 = run_json(capsys, lab, sinks, config, "chk-v6.lab", "--ipv6")
    assert [f["subject"] for f in findings(only6, "smtp.connect")] == ["mx.chk-v6.lab[::1]"]


def test_check_tlsa_mismatch_is_an_error(capsys, lab, sinks, config) -> None:  # type: ignore[no-untyped-def]
    status, report = run_json(capsys, lab, sinks, config, "rpt-danebad.lab")
    assert status == 2
    first = report["first_fix"]
    assert (first["check"], first["subject"], first["status"]) == (
        "dane.match",
        "mx.rpt-danebad.lab",
        "error",
    )
    assert "deferred by every DANE sender" in first["message"]
    assert statuses(report, "dane.rollover") == ["warning"]  # a single TLSA record
    assert statuses(report, "senders.postfix") == ["error"]
    assert report["facts"]["reply"] == "OK dane-only"


def test_check_policy_not_covering_an_mx_is_an_error(capsys, lab, sinks, config) -> None:  # type: ignore[no-untyped-def]
    status, report = run_json(capsys, lab, sinks, config, "rpt-stspattern.lab")
    assert status == 2
    first = report["first_fix"]
    assert (first["check"], first["subject"]) == (
        "mta-sts-policy.mx-coverage",
        "rogue.rpt-stspattern.lab",
    )
    assert "MTA-STS senders will not deliver to it" in first["message"]
    coverage = {f["subject"]: f["status"] for f in findings(report, "mta-sts-policy.mx-coverage")}
    assert coverage == {"rogue.rpt-stspattern.lab": "error", "mx.rpt-stspattern.lab": "ok"}
    (name,) = findings(report, "smtp.name")
    assert name["subject"].startswith("rogue.rpt-stspattern.lab[127.")
    assert statuses(report, "senders.postfix") == ["warning"]  # the good MX still gets mail


def test_check_certificate_expiring_soon_is_a_warning(capsys, lab, sinks, config) -> None:  # type: ignore[no-untyped-def]
    status, report = run_json(capsys, lab, sinks, config, "chk-soon.lab")
    assert (status, report["counts"]["error"], report["counts"]["warning"]) == (1, 0, 1)
    first = report["first_fix"]
    assert first["check"] == "smtp.expiry"
    assert f"expires in {SOON_DAYS} days" in first["message"]
    assert [c["days_left"] for c in report["facts"]["certificates"]] == [SOON_DAYS]


def test_check_broken_txt_record_names_the_fault(capsys, lab, sinks, config) -> None:  # type: ignore[no-untyped-def]
    status, report = run_json(capsys, lab, sinks, config, "sts-badtxt.lab", "--no-smtp")
    assert status == 2
    first = report["first_fix"]
    assert (first["check"], first["status"]) == ("mta-sts-record.grammar", "error")
    assert "space inside the id 'bad id!'" in first["message"]
    assert report["facts"]["reply"] == "NOTFOUND "
    assert statuses(report, "smtp.starttls") == ["skipped", "skipped"]


def test_check_txt_id_too_long(capsys, lab, sinks, config) -> None:  # type: ignore[no-untyped-def]
    status, report = run_json(capsys, lab, sinks, config, "chk-longid.lab", "--no-smtp")
    assert status == 2
    assert f"id has {len(LONG_ID)} characters, at most 32" in report["first_fix"]["message"]


def test_check_two_txt_records(capsys, lab, sinks, config) -> None:  # type: ignore[no-untyped-def]
    status, report = run_json(capsys, lab, sinks, config, "sts-twotxt.lab", "--no-smtp")
    assert status == 2
    assert report["first_fix"]["message"].startswith("2 v=STSv1 records")


POLICY_FAULTS = {
    "colon": ("chk-colon.lab", 2, "mta-sts-policy.grammar", "line 2: whitespace before ':'"),
    "ip-mx": ("chk-ipmx.lab", 2, "mta-sts-policy.grammar", "line 3: bad mx pattern '192.0.2.25'"),
    "max-age": ("chk-shortage.lab", 1, "mta-sts-policy.max-age", "max_age 3600 s is below one day"),
    "testing": ("sts-testing.lab", 1, "mta-sts-policy.mode", "mode testing"),
    "redirect": ("sts-redirect.lab", 2, "mta-sts-policy.fetch", "fetch failed (redirect)"),
    "https-name": ("sts-wrongname.lab", 2, "mta-sts-policy.fetch", "fetch failed (certificate)"),
}


@pytest.mark.parametrize("case", POLICY_FAULTS.values(), ids=POLICY_FAULTS.keys())
def test_check_policy_faults(capsys, lab, sinks, config, case) -> None:  # type: ignore[no-untyped-def]
    domain, status, check, words = case
    got, report = run_json(capsys, lab, sinks, config, domain, "--no-smtp")
    first = report["first_fix"]
    assert (got, first["check"]) == (status, check)
    assert words in first["message"]


def test_check_unusable_tlsa_is_a_warning(capsys, lab, sinks, config) -> None:  # type: ignore[no-untyped-def]
    status, report = run_json(capsys, lab, sinks, config, "unusable.lab", "--no-smtp")
    assert (status, report["facts"]["reply"]) == (1, "OK dane")
    (tlsa,) = [f for f in findings(report, "dane.tlsa") if f["subject"] == "mx1.unusable.lab"]
    assert tlsa["status"] == "warning"
    assert "all 3 TLSA records are unusable" in tlsa["message"]
    assert any("1 1 1" in e and "PKIX-EE" in e for e in tlsa["evidence"])
    (senders,) = findings(report, "senders.postfix")
    assert (senders["status"], "does not authenticate" in senders["message"]) == ("warning", True)


def test_check_tlsrpt_rua_malformed(capsys, lab, sinks, config) -> None:  # type: ignore[no-untyped-def]
    status, report = run_json(capsys, lab, sinks, config, "chk-badrua.lab")
    assert status == 2
    first = report["first_fix"]
    assert (first["check"], first["subject"]) == ("tlsrpt.rua", "_smtp._tls.chk-badrua.lab")
    assert "'mailto:reports.example' is not usable" in first["message"]
    assert report["facts"]["verdict"] == "secure"  # mail itself is fine


SMTP_FAULTS = {
    "no-starttls": ("rpt-nostarttls.lab", "smtp.starttls", "STARTTLS is not offered"),
    "wrong-name": ("rpt-wrongname.lab", "smtp.name", "certificate is for mx.wrong-name.lab"),
    "untrusted": ("rpt-untrusted.lab", "smtp.chain", "unable to get local issuer certificate"),
    "self-signed": ("rpt-selfsigned.lab", "smtp.chain", "self-signed certificate"),
    "expired": ("rpt-expired.lab", "smtp.expiry", "certificate expired on"),
}


@pytest.mark.parametrize("case", SMTP_FAULTS.values(), ids=SMTP_FAULTS.keys())
def test_check_smtp_faults_under_enforce(capsys, lab, sinks, config, case) -> None:  # type: ignore[no-untyped-def]
    domain, check, words = case
    status, report = run_json(capsys, lab, sinks, config, domain)
    first = report["first_fix"]
    assert (status, first["check"], first["status"]) == (2, check, "error")
    assert words in first["message"]
    assert statuses(report, "senders.postfix") == ["error"]


def test_check_resolver_unreachable_exits_3(capsys, lab, sinks, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host, port = lab.blackhole
    dead = lab.write_config(
        tmp_path / "dead.yml", dns={"nameservers": [f"{host}:{port}"], "timeout": 0.5}
    )
    status, report = run_json(capsys, lab, sinks, dead, "rpt-sts.lab")
    assert (status, report["status"]) == (3, "unknown")
    assert "resolver did not answer" in report["unknown"]


def test_check_human_output_and_monitoring_as_a_new_user_would(lab, sinks, config) -> None:  # type: ignore[no-untyped-def]
    def cli(*extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tlspolicy", *check_args(lab, sinks, config, *extra)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    good = cli("rpt-sts.lab")
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.splitlines()[0] == "✔ rpt-sts.lab: all checks passed"
    assert "✗" not in good.stdout and "\n  ! " not in good.stdout
    bad = cli("rpt-danebad.lab", "--verbose")
    assert bad.returncode == 2
    assert bad.stdout.splitlines()[0].startswith(
        "✗ rpt-danebad.lab: fix first: DANE: mx.rpt-danebad.lab: no TLSA record matches"
    )
    assert "TLSA at _25._tcp.mx.rpt-danebad.lab (DNSSEC secure)" in bad.stdout  # evidence
    monitor = cli("chk-soon.lab", "--monitoring")
    assert monitor.returncode == 1
    (line,) = monitor.stdout.splitlines()
    assert line.startswith("TLSPOLICY WARNING - chk-soon.lab: 0 errors, 1 warning;")
    assert line.endswith(f"_days'={SOON_DAYS};14;0")
