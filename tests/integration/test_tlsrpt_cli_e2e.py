"""The whole path by the CLI: collect datagrams, ``show``, ``send`` by mail and HTTPS, once.

The rua is published in the lab's signed zone and looked up through the lab's validating
resolver at send time; reports go to the real SMTP and HTTPS sinks on loopback.
"""

from __future__ import annotations

import email
import gzip
import json
from collections.abc import Iterator
from email.policy import default
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import ServerProcess
from tests.integration.test_tlsrpt_collect_e2e import TOMORROW, Collect, tlspolicy, wait_for
from tests.lab.netutil import LOOPBACK
from tests.lab.scenario import Lab
from tests.lab.tlsrpt_sinks import SINK_HOST, HttpsSink, SmtpSink, running_sinks
from tests.schemas import validate_report
from tests.unit.tlsrpt.helpers import MISMATCH, NO_POLICY_OK, datagram, sts_policy

pytestmark = pytest.mark.integration

DOMAIN = "rpt.lab"


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[tuple[SmtpSink, HttpsSink]]:
    with running_sinks(tmp_path) as pair:
        yield pair


def sections(tmp_path: Path, smtp: SmtpSink, https: HttpsSink) -> dict[str, Any]:
    return {
        "cache": {"backend": "sqlite", "path": str(tmp_path / "state" / "cache.sqlite3")},
        "tlsrpt": {
            "collector_socket": str(tmp_path / "run" / "tlsrpt.sock"),
            "submitter": "mx.example.net",
            "organization_name": "Example Networks",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            **https.reporter_settings(),
        },
    }


def lab_config(lab: Lab, tmp_path: Path, smtp: SmtpSink, https: HttpsSink) -> Path:
    return lab.write_config(tmp_path / "tlspolicy.yml", **sections(tmp_path, smtp, https))


def publish(lab: Lab, https: HttpsSink) -> str:
    record = f"v=TLSRPTv1; rua=mailto:reports@{DOMAIN},{https.url('/report')}"
    lab.dns.set_records(f"_smtp._tls.{DOMAIN}", "TXT", [f'"{record}"'])
    lab.dns.set_records(SINK_HOST, "A", [LOOPBACK])
    lab.dns.apply()
    return record


def test_tlsrpt_cli_collect_show_send_once(
    fresh_lab: Lab, tmp_path: Path, sinks: tuple[SmtpSink, HttpsSink]
) -> None:
    smtp, https = sinks
    record = publish(fresh_lab, https)
    config = lab_config(fresh_lab, tmp_path, smtp, https)

    collect = Collect(config)
    try:
        collect.send(*[datagram(NO_POLICY_OK, domain=DOMAIN, record=record)] * 9)
        bad = sts_policy(failed=True, details=[MISMATCH])
        collect.send(
            *[datagram({**bad, "policy-domain": DOMAIN}, domain=DOMAIN, record=record)] * 2
        )
    finally:
        assert collect.stop() == 0

    shown = tlspolicy("tlsrpt", "show", DOMAIN, "--json", "-c", str(config), now=TOMORROW)
    assert shown.returncode == 0, shown.stderr
    expected = json.loads(shown.stdout)
    validate_report(expected)

    dry = tlspolicy("tlsrpt", "send", "--dry-run", "-c", str(config), now=TOMORROW)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert dry.stdout.count("dry-run") == 2 and not smtp.messages and not https.requests

    sent = tlspolicy("tlsrpt", "send", "-c", str(config), now=TOMORROW)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert sent.stdout.count(" sent") == 2
    again = tlspolicy("tlsrpt", "send", "--day", "2026-12-01", "--domain", DOMAIN,
                      "-c", str(config), now=TOMORROW)  # fmt: skip
    assert again.returncode == 0 and "nothing to send" in again.stdout

    (mail,) = smtp.messages
    assert mail.recipients == (f"reports@{DOMAIN}",)
    msg = email.message_from_bytes(mail.data, policy=default)
    assert msg["TLS-Report-Domain"] == DOMAIN
    attachment = list(msg.iter_parts())[1]  # type: ignore[attr-defined]
    assert json.loads(gzip.decompress(attachment.get_payload(decode=True))) == expected
    (post,) = https.requests
    assert json.loads(gzip.decompress(post.body)) == expected

    summary = {p["policy"]["policy-type"]: p["summary"] for p in expected["policies"]}
    assert summary["no-policy-found"]["total-successful-session-count"] == 9
    assert summary["sts"]["total-failure-session-count"] == 2

    status = tlspolicy("tlsrpt", "status", "--json", "-c", str(config), now=TOMORROW)
    (yesterday,) = json.loads(status.stdout)["days"][1]["domains"]
    assert {d["state"] for d in yesterday["deliveries"]} == {"sent"}


def test_tlsrpt_cli_send_without_record_sends_nothing(
    fresh_lab: Lab, tmp_path: Path, sinks: tuple[SmtpSink, HttpsSink]
) -> None:
    smtp, https = sinks
    config = lab_config(fresh_lab, tmp_path, smtp, https)
    collect = Collect(config)
    try:
        collect.send(datagram(NO_POLICY_OK, domain="norecord.lab"))
    finally:
        collect.stop()
    sent = tlspolicy("tlsrpt", "send", "-c", str(config), now=TOMORROW)
    assert sent.returncode == 75 and "no TLSRPT record" in sent.stdout
    status = tlspolicy("tlsrpt", "status", "-c", str(config), now=TOMORROW)
    assert "failed after 1 attempts: no TLSRPT record" in status.stdout
    assert not smtp.messages and not https.requests


def test_tlsrpt_reporter_runs_inside_serve(
    fresh_lab: Lab, tmp_path: Path, sinks: tuple[SmtpSink, HttpsSink],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    smtp, https = sinks
    record = publish(fresh_lab, https)
    collect = Collect(lab_config(fresh_lab, tmp_path, smtp, https))
    try:
        collect.send(*[datagram(NO_POLICY_OK, domain=DOMAIN, record=record)] * 4)
    finally:
        assert collect.stop() == 0
    config = sections(tmp_path, smtp, https)
    del config["tlsrpt"]["collector_socket"]  # the reporter alone
    config["tlsrpt"].update(reporter=True, delay=0, spread=0)
    monkeypatch.setenv("TLSPOLICY_TLSRPT_NOW", TOMORROW)  # the server inherits it
    (tmp_path / "serve").mkdir()
    server = ServerProcess(fresh_lab, tmp_path / "serve", **config)
    try:
        wait_for(lambda: len(smtp.messages) == 1 and len(https.requests) == 1, "both reports")
    finally:
        server.stop()
    (mail,) = smtp.messages
    report = json.loads(
        gzip.decompress(
            list(email.message_from_bytes(mail.data, policy=default).iter_parts())[1].get_payload(  # type: ignore[attr-defined]
                decode=True
            )
        )
    )
    validate_report(report)
    assert report["policies"][0]["summary"]["total-successful-session-count"] == 4
    assert len(smtp.messages) == 1 and len(https.requests) == 1
