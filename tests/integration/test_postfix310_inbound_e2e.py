"""A report mailed through the lab's real Postfix 3.10 and received by ``tlspolicy tlsrpt receive``.

The report is our reporter's (``report.build_report``, ``mail.build_message`` with a DKIM
key); the key's record is published in the lab's signed zone and looked up through the
lab's validating Unbound, as ``receive`` does in production.

Where the mail leaves Postfix: ``tlspolicy tlsrpt receive`` is meant for a ``pipe(8)``
transport, but Postfix 3.10 runs in a Debian 13 root (``tests/lab/postfix310.py``) that
holds neither the host's Python nor the repository, and the host's interpreter (built
against the host's libraries) cannot run inside it. So Postfix delivers the message over
SMTP, with the TLS policy our server gives, to the rua domain's MX sink on loopback
(``tests/lab/mxsinks.py``), and the test pipes the bytes that sink received into
``tlspolicy tlsrpt receive`` on the host: the message ``pipe(8)`` would have handed over,
with Postfix's own Received header on top.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.postfixlab import PostfixLab, start_postfix_lab
from tests.integration.server import tlspolicy_command
from tests.lab.dkimkey import DkimTestKey
from tests.lab.mxsinks import Received
from tests.lab.scenario import Lab
from tests.lab.smtpcases import GOOD_MX, REPORT_DOMAIN
from tests.unit.tlsrpt.inbound_vectors import OUR_DOMAIN, our_report
from tlspolicy.tlsrpt.mail import DkimKey, build_message, compress
from tlspolicy.tlsrpt.report import format_report

pytestmark = [pytest.mark.integration, pytest.mark.postfix310]

SUBMITTER = "reporter.example.lab"  # in the lab's signed zone
SENDER = f"noreply-tlsrpt@{SUBMITTER}"
NOW = "2026-06-04T12:00:00Z"  # two days after the report's day


@pytest.fixture(scope="module")
def plab(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostfixLab]:
    with start_postfix_lab(lab, tmp_path_factory.mktemp("postfix310-inbound")) as running:
        yield running


def publish(lab: Lab, key: DkimTestKey) -> None:
    record = key.record.decode()
    chunks = " ".join(f'"{record[i : i + 200]}"' for i in range(0, len(record), 200))
    lab.dns.set_records(key.name.decode(), "TXT", [chunks])
    lab.dns.apply()


def mail(rcpt: str, rid: str, key: DkimTestKey | None) -> bytes:
    report = our_report(rid=rid)
    dkim_key = None if key is None else DkimKey(key.pem, key.selector, key.domain)
    return build_message(
        report, compress(format_report(report)), domain=OUR_DOMAIN, submitter=SUBMITTER,
        sender=SENDER, recipient=rcpt, now=datetime(2026, 6, 3, 1, 0, tzinfo=UTC),
        dkim_key=dkim_key,
    )  # fmt: skip


def through_postfix(plab: PostfixLab, message_for: Callable[[str], bytes]) -> Received:
    """Inject with the root's sendmail, wait for Postfix's ``status=sent``, return what the
    rua domain's MX sink got."""
    postfix = plab.postfix
    rcpt = postfix.new_rcpt(REPORT_DOMAIN)
    message = message_for(rcpt)
    sendmail = ["chroot", str(postfix.merged), "/usr/sbin/sendmail", "-i", "-f", SENDER]
    postfix.ns.run([*sendmail, "--", rcpt], input=message)
    delivery = postfix.wait_delivery(rcpt)
    assert (delivery.status, delivery.relay.split("[")[0]) == ("sent", GOOD_MX), delivery.line
    received = plab.sinks.wait_for(rcpt)
    assert received.tls and received.mail_from == SENDER
    return received


def receive(config: Path, data: bytes) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "TLSPOLICY_TLSRPT_NOW": NOW, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        tlspolicy_command("tlsrpt", "receive", "-c", str(config)),
        input=data, capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_postfix310_mailed_report_is_stored_with_its_dkim_signature_verified(
    plab: PostfixLab, fresh_lab: Lab, tmp_path: Path
) -> None:
    key = DkimTestKey("tlsrpt", SUBMITTER)
    publish(fresh_lab, key)
    config = fresh_lab.write_config(
        tmp_path / "tlspolicy.yml",
        tlsrpt={"inbound_domains": [OUR_DOMAIN], "store": {"path": str(tmp_path / "r.sqlite3")}},
    )

    signed = through_postfix(plab, lambda rcpt: mail(rcpt, "signed@reporter.example.lab", key))
    assert signed.data.startswith(b"Received: "), signed.data[:200]  # Postfix's, on top
    first = receive(config, signed.data)
    assert (first.returncode, b": accepted: Sender Org signed@" in first.stdout) == (0, True), first
    again = receive(config, signed.data)
    assert (again.returncode, b": duplicate:" in again.stdout) == (0, True), again

    unsigned = through_postfix(plab, lambda rcpt: mail(rcpt, "unsigned@reporter.example.lab", None))
    refused = receive(config, unsigned.data)
    assert (refused.returncode, b": unsigned:" in refused.stdout) == (0, True), refused

    env = {**os.environ, "TLSPOLICY_TLSRPT_NOW": NOW}
    shown = subprocess.run(
        tlspolicy_command("tlsrpt", "received", "--json", "-c", str(config)),
        capture_output=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    result = json.loads(shown.stdout)
    assert (result["successful"], result["failed"]) == (90, 10)  # the signed report, once
    (domain,) = result["domains"]
    assert domain["days"][0]["reporting_organizations"] == ["Sender Org"]
