"""Inbound reports by the CLI: ``tlsrpt receive`` (DKIM key in the lab's signed zone, looked
up through the lab's validating resolver), ``tlsrpt import`` and ``received --json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import dkim
import pytest

from tests.lab.dkimkey import DkimTestKey
from tests.lab.netutil import free_port
from tests.lab.scenario import Lab
from tests.unit.tlsrpt.inbound_vectors import (
    OUR_SUBMITTER,
    RFC8460_EXAMPLE,
    gz,
    our_mail,
    our_report,
    sys4_reporter,
)

pytestmark = pytest.mark.integration

NOW = "2026-06-04T12:00:00Z"  # two days after OUR_DAY


def tlspolicy(config: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "TLSPOLICY_TLSRPT_NOW": NOW, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tlspolicy", "tlsrpt", "-c", str(config), *args],
        input=stdin, capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def publish(lab: Lab, *keys: DkimTestKey) -> None:
    for key in keys:
        record = key.record.decode()
        chunks = " ".join(f'"{record[i : i + 200]}"' for i in range(0, len(record), 200))
        lab.dns.set_records(key.name.decode(), "TXT", [chunks])
    lab.dns.apply()


def test_tlsrpt_inbound_receive_import_and_received(fresh_lab: Lab, tmp_path: Path) -> None:
    ours = DkimTestKey("tlsrpt", f"{OUR_SUBMITTER}.lab")
    sys4_key = DkimTestKey("mail", "sys4.example.lab")
    publish(fresh_lab, ours, sys4_key)
    config = fresh_lab.write_config(
        tmp_path / "tlspolicy.yml",
        cache={"backend": "sqlite", "path": str(tmp_path / "state" / "cache.sqlite3")},
        tlsrpt={"inbound_domains": ["rcpt.example"]},
    )
    # Our reporter, signed by the submitter's domain as published in the lab.
    report = our_report(rid="one@sender.example.lab")
    mail = our_mail(report, None).replace(
        b"TLS-Report-Submitter: sender.example", b"TLS-Report-Submitter: sender.example.lab"
    )
    signed = dkim.sign(mail, b"tlsrpt", ours.domain.encode(), ours.pem, linesep=b"\r\n") + mail
    first = tlspolicy(config, "receive", stdin=signed)
    assert (first.returncode, b": accepted:" in first.stdout) == (0, True), first
    again = tlspolicy(config, "receive", stdin=signed)
    assert (again.returncode, b": duplicate:" in again.stdout) == (0, True), again
    # Not counted: unsigned, and signed with a key that is not the published one.
    unsigned = tlspolicy(config, "receive", stdin=mail)
    assert (unsigned.returncode, b": unsigned:" in unsigned.stdout) == (0, True), unsigned
    forged_key = DkimTestKey("tlsrpt", ours.domain)
    forged = dkim.sign(mail, b"tlsrpt", ours.domain.encode(), forged_key.pem, linesep=b"\r\n")
    wrong = tlspolicy(config, "receive", stdin=forged + mail)
    assert (wrong.returncode, b": unsigned:" in wrong.stdout) == (0, True), wrong
    # Not a report at all: exit 0 all the same (never a bounce).
    hello = tlspolicy(config, "receive", stdin=b"From: a@b.lab\r\nSubject: hi\r\n\r\nhi\r\n")
    assert (hello.returncode, b"not-report" in hello.stdout) == (0, True), hello

    # sys4's tlsrpt-reporter, by mail (signed by its MTA) and as a file; the RFC example.
    sys4 = sys4_reporter(tmp_path)
    sys4_mail = sys4.mail.replace(b"Submitter: sys4.example", b"Submitter: sys4.example.lab")
    sys4_signed = dkim.sign(sys4_mail, b"mail", b"sys4.example.lab", sys4_key.pem, linesep=b"\r\n")
    eml = tmp_path / "sys4.eml"
    eml.write_bytes(sys4_signed + sys4_mail)
    (tmp_path / "rfc.json").write_text(json.dumps(RFC8460_EXAMPLE))
    (tmp_path / "rfc.json.gz").write_bytes(gz(RFC8460_EXAMPLE))
    (tmp_path / "bad.json").write_text("{}")
    imported = tlspolicy(config, "import", str(eml), str(tmp_path / "rfc.json"),
                         str(tmp_path / "rfc.json.gz"), str(tmp_path / "bad.json"))  # fmt: skip
    lines = imported.stdout.decode().splitlines()
    assert imported.returncode == 1, imported  # bad.json was refused
    assert [line.split(": ")[1] for line in lines] == [
        "accepted",
        "accepted",
        "duplicate",
        "invalid",
    ]

    shown = tlspolicy(config, "received", "--since", "7d", "--json")
    assert shown.returncode == 0, shown
    result = json.loads(shown.stdout)
    (domain,) = result["domains"]  # the RFC example is from 2016: outside 7 days
    assert (domain["domain"], domain["successful"], domain["failed"]) == ("rcpt.example", 135, 15)
    assert domain["days"][0]["by_organization"] == {"Sender Org": 10, "sys4 test": 5}
    assert domain["fix_first"].startswith("certificate-expired on mx2.rcpt.example, reported by 2")
    text = tlspolicy(config, "received", "rcpt.example")
    assert b"fix first: certificate-expired on mx2.rcpt.example" in text.stdout, text
    everything = json.loads(tlspolicy(config, "received", "--since", "5000d", "--json").stdout)
    assert everything["sessions"] == 150 + 5326 + 303


def post_report(url: str, body: bytes, content_type: str) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_tlsrpt_inbound_https_endpoint_of_the_real_server(
    start_server: Any, tmp_path: Path
) -> None:
    """``POST /tlsrpt`` on ``tlsrpt.inbound_listen`` inside ``tlspolicy serve``: our
    reporter's gzip and the RFC 8460 §4.5 example as JSON are stored (201), a second POST of
    the same report is a duplicate (201, counted once), and ``tlsrpt received`` with the
    server's own configuration file shows exact totals."""
    port = free_port(udp=False)
    store = tmp_path / "state" / "tlsrpt.sqlite3"
    server = start_server(
        tlsrpt={
            "inbound_listen": f"127.0.0.1:{port}",
            "inbound_domains": ["rcpt.example", "company-y.example"],
            "store": {"path": str(store)},
        }
    )
    url = f"http://127.0.0.1:{port}/tlsrpt"
    ours = gz(our_report(rid="https-one@sender.example"))
    assert post_report(url, ours, "application/tlsrpt+gzip") == (201, "stored\n")
    assert post_report(url, ours, "application/tlsrpt+gzip") == (201, "stored\n")
    rfc = json.dumps(RFC8460_EXAMPLE).encode()
    assert post_report(url, rfc, "application/tlsrpt+json") == (201, "stored\n")
    status, _ = post_report(url, rfc, "text/plain")
    assert status == 415

    config = server.config_path
    shown = tlspolicy(config, "received", "--json")
    assert shown.returncode == 0, shown
    result = json.loads(shown.stdout)
    (domain,) = result["domains"]  # the RFC example is from 2016: outside 7 days
    assert (domain["domain"], domain["successful"], domain["failed"]) == ("rcpt.example", 90, 10)
    everything = json.loads(tlspolicy(config, "received", "--since", "5000d", "--json").stdout)
    assert (everything["successful"], everything["failed"]) == (90 + 5326, 10 + 303)
    log = server.log()
    assert "TLSRPT reports accepted on http://127.0.0.1:" in log, log
