"""Postfix 3.10's TLSRPT datagrams into our real collector (``tlspolicy tlsrpt collect``).

The lab is the one of ``test_postfix310_e2e.py`` (``postfixlab.py``), with the collector bound
on Postfix's TLSRPT socket instead of the plain capture. Each case is delivered a known number
of times; the stored counts (``tlsrpt status --json``) and the report that would be sent
(``tlsrpt show DOMAIN --json``) must say exactly what those deliveries did.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.postfixlab import PostfixLab, start_postfix_lab
from tests.integration.server import tlspolicy_command
from tests.lab.netutil import wait_until
from tests.lab.scenario import Lab
from tests.lab.smtpcases import GOOD_MX, STS_MX

pytestmark = [pytest.mark.integration, pytest.mark.postfix310]

SUBMITTER = "postfix310.lab"
COUNT_TIMEOUT_S = 20.0  # the collector writes every 0.5 s
STS_LINES = ["version: STSv1", "mode: enforce", "max_age: 86400"]
# A fixed "now" for the collector and the CLI (TLSPOLICY_TLSRPT_NOW): no day rollover mid-test.
DAY = "2026-06-15"
CLOCK_ENV = {"TLSPOLICY_TLSRPT_NOW": f"{DAY}T12:00:00Z"}

# domain -> (deliveries, final status, policy-type, policy-domain, result-type, reason)
CASES: dict[str, tuple[int, str, str, str, str | None, str | None]] = {
    "rpt-sts.lab": (3, "sent", "sts", "rpt-sts.lab", None, None),
    "rpt-dane.lab": (2, "sent", "tlsa", GOOD_MX, None, None),
    "rpt-testing.lab": (1, "sent", "no-policy-found", "rpt-testing.lab", None, None),
    "rpt-nostarttls.lab": (2, "deferred", "sts", "rpt-nostarttls.lab", "starttls-not-supported",
                           None),
    "rpt-wrongname.lab": (1, "deferred", "sts", "rpt-wrongname.lab",
                          "certificate-host-mismatch", None),
    "rpt-expired.lab": (1, "deferred", "sts", "rpt-expired.lab", "certificate-expired", None),
    "rpt-selfsigned.lab": (1, "deferred", "sts", "rpt-selfsigned.lab", "validation-failure",
                           "self-signed_certificate"),
    "rpt-danebad.lab": (1, "deferred", "tlsa", "mx.rpt-danebad.lab", "certificate-not-trusted",
                        None),
}  # fmt: skip


class Collector:
    """``tlspolicy tlsrpt collect`` on the lab Postfix's socket, and the CLI that reads it."""

    def __init__(self, lab: Lab, plab: PostfixLab, workdir: Path) -> None:
        self.config = lab.write_config(
            workdir / "collector.yml",
            tlsrpt={
                "collector_socket": str(plab.postfix.tlsrpt_socket),
                "socket_mode": "0666",
                "submitter": SUBMITTER,
                "store": {"path": str(workdir / "tlsrpt.sqlite")},
            },
        )
        self.log = workdir / "collector.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                tlspolicy_command("tlsrpt", "collect", "-c", str(self.config)),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **CLOCK_ENV, "PYTHONUNBUFFERED": "1"},
            )
        socket_path = plab.postfix.tlsrpt_socket
        wait_until(socket_path.exists, timeout=15.0, what="the TLSRPT collector socket")

    def cli(self, *args: str) -> Any:
        done = subprocess.run(
            tlspolicy_command("tlsrpt", *args, "--json", "-c", str(self.config)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, **CLOCK_ENV},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    def counts(self) -> dict[str, tuple[int, int]]:
        """(successful, failed) per report domain on ``DAY``."""
        found: dict[str, tuple[int, int]] = {}
        for day in self.cli("status")["days"]:
            assert day["day"] == DAY or not day["domains"], day
            for item in day["domains"]:
                ok, failed = found.get(item["domain"], (0, 0))
                found[item["domain"]] = (ok + item["successful"], failed + item["failed"])
        return found

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)


@pytest.fixture(scope="module")
def plab(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostfixLab]:
    with start_postfix_lab(lab, tmp_path_factory.mktemp("postfix310-tlsrpt")) as running:
        running.capture.stop()  # the collector takes the socket
        yield running


@pytest.fixture(scope="module")
def delivered(
    lab: Lab, plab: PostfixLab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Collector]:
    """The collector, after every delivery of ``CASES`` has been counted."""
    collector = Collector(lab, plab, tmp_path_factory.mktemp("collector"))
    try:
        for domain, (times, status, *_) in CASES.items():
            for _ in range(times):
                rcpt = plab.postfix.new_rcpt(domain)
                plab.postfix.send(rcpt)
                delivery = plab.postfix.wait_delivery(rcpt)
                assert delivery.status == status, delivery.line
        want = {d: _expected_counts(d) for d in CASES}
        deadline = time.monotonic() + COUNT_TIMEOUT_S
        while (seen := collector.counts()) != want and time.monotonic() < deadline:
            time.sleep(0.2)
        assert seen == want, collector.log.read_text()[-3000:]
        yield collector
    finally:
        collector.stop()


def _expected_counts(domain: str) -> tuple[int, int]:
    times, status, *_ = CASES[domain]
    return (times, 0) if status == "sent" else (0, times)


def test_stored_counts_match_the_deliveries(plab: PostfixLab, delivered: Collector) -> None:
    assert delivered.counts() == {d: _expected_counts(d) for d in CASES}
    assert not plab.postfix.log_lines("Could not report TLS handshake result")


@pytest.mark.parametrize("domain", list(CASES))
def test_report_says_what_each_delivery_did(
    plab: PostfixLab, delivered: Collector, domain: str
) -> None:
    times, status, policy_type, policy_domain, result, reason = CASES[domain]
    report = delivered.cli("show", domain, "--day", DAY)
    assert report["date-range"]["start-datetime"] == f"{DAY}T00:00:00Z"
    (item,) = report["policies"]
    policy = item["policy"]
    assert (policy["policy-type"], policy["policy-domain"]) == (policy_type, policy_domain)
    ok, failed = _expected_counts(domain)
    assert item["summary"] == {
        "total-successful-session-count": ok,
        "total-failure-session-count": failed,
    }
    if policy_type == "sts":
        host = STS_MX if status == "sent" else f"mx.{domain}"
        assert policy["mx-host"] == [host]
        assert policy["policy-string"] == [*STS_LINES[:2], f"mx: {host}", STS_LINES[2]]
    elif policy_type == "tlsa":
        assert [s.split()[:3] for s in policy["policy-string"]] == [["3", "1", "1"]]
    if result is None:
        assert "failure-details" not in item
        return
    (detail,) = item["failure-details"]
    host = f"mx.{domain}"
    assert detail["result-type"] == result
    assert detail["receiving-mx-hostname"] == host
    assert detail["receiving-ip"] == plab.addresses[host]
    assert detail["failed-session-count"] == times
    assert detail.get("failure-reason-code") == reason
