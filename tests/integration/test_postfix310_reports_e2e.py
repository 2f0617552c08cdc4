"""The README's TLSRPT section as a new user would follow it, with a real Postfix 3.10.

The lab is ``postfixlab.py``'s, configured from the README itself: its main.cf lines (the
relative socket path, the ``sender_dependent_default_transport_maps`` entry for the report
sender), its master.cf ``tlsrpt-smtp`` transport, its ``tlsrpt:`` keys. Lab-only changes
to those keys: the collector socket is the lab's host path, mode 0666 without
``socket_group`` (the lab root's postfix user is not the host's), the submitter is the lab
Postfix's name, and the relay and HTTPS CA point at the lab.

1. Postfix delivers lab mail to good and misbehaving MX hosts (``CASES``); its datagrams go
   to the real ``tlspolicy tlsrpt collect`` (time frozen on ``DAY``).
2. With "now" the next morning, past 00:00 + ``delay`` + ``spread``, ``tlsrpt show`` gives a
   schema-valid report per domain whose counts are the deliveries', and ``tlsrpt send``
   submits it to the lab Postfix's smtpd (reached through an inward ``Forwarder``), which
   delivers it through ``tlsrpt-smtp`` to the rua's MX sink, and POSTs it to the HTTPS sink.
   A second ``send`` sends nothing.
3. The rua domain (``reports.rpt.lab``) publishes ``_smtp._tls`` itself: a plain delivery
   there gives a datagram (the control), the report mail gives none (``DatagramCapture``
   with its barrier, bound on the socket once the collector is stopped). The reports carry
   ``TLS-Required: No``, which alone also stops Postfix 3.10's TLSRPT for a message; so a
   message from the report sender *without* that header checks the transport by itself.

Every wait is bounded: Postfix's log line per recipient, the sinks, the store's counts.
"""

from __future__ import annotations

import email
import gzip
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import dkim
import pytest
import yaml

from tests.integration.postfixlab import PostfixLab, start_postfix_lab
from tests.integration.server import tlspolicy_command
from tests.lab.dkimkey import DkimTestKey
from tests.lab.mxsinks import Received
from tests.lab.netutil import LOOPBACK, wait_until
from tests.lab.postfix310 import MYHOSTNAME
from tests.lab.readme import readme_block
from tests.lab.scenario import Lab, txt
from tests.lab.smtpcases import GOOD_MX, REPORT_ADDRESS, REPORT_DOMAIN
from tests.lab.tlsrpt_sinks import SINK_HOST, HttpsSink
from tests.schemas import validate_report

pytestmark = [pytest.mark.integration, pytest.mark.postfix310]

README_HOST = "mx.example.net"  # the README's submitter, replaced by the lab Postfix's name
SUBMITTER = MYHOSTNAME
SENDER = f"noreply-tlsrpt@{SUBMITTER}"
DKIM_SELECTOR = "tlsrpt"
DKIM = DkimTestKey(DKIM_SELECTOR, SUBMITTER)  # the README's dkim_key, for the lab
DAY = "2026-06-15"
COLLECT_NOW = f"{DAY}T12:00:00Z"
SEND_NOW = "2026-06-16T06:00:00Z"  # after 00:00 + delay (900 s) + spread (14400 s)
WAIT_S = 20.0  # for the store's counts (written every 0.5 s), sinks and log lines

# domain -> (deliveries, Postfix's status, policy-type, result-type of the failures)
CASES: dict[str, tuple[int, str, str, str | None]] = {
    "rpt-sts.lab": (2, "sent", "sts", None),
    "rpt-dane.lab": (1, "sent", "tlsa", None),
    "rpt-nostarttls.lab": (2, "deferred", "sts", "starttls-not-supported"),
    "rpt-danebad.lab": (1, "deferred", "tlsa", "certificate-not-trusted"),
}
TLSRPT_LOG = re.compile(
    rf"postfix/tlsrpt/smtp\[\d+\]: \w+: to=<{re.escape(REPORT_ADDRESS)}>,"
    rf" relay={re.escape(GOOD_MX)}\[[\d.]+\]:25,.* status=sent"
)


def readme_tlsrpt(label: str) -> str:
    """The README TLSRPT section's block after ``**label**``, for the lab's host name."""
    return readme_block("TLSRPT", label).replace(README_HOST, SUBMITTER)


def main_cf_settings() -> list[str]:
    lines = readme_tlsrpt("main.cf").splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def tlspolicy(*args: str, now: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tlspolicy_command(*args),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TLSPOLICY_TLSRPT_NOW": now},
    )


class Reporter:
    """The README's ``tlsrpt:`` section for the lab; ``collect`` runs the collector."""

    def __init__(self, lab: Lab, plab: PostfixLab, https: HttpsSink, workdir: Path) -> None:
        section = yaml.safe_load(readme_tlsrpt("tlspolicy.yml"))["tlsrpt"]
        assert section["contact_info"].endswith(f"@{SUBMITTER}"), section
        assert section["sender"] == SENDER and section["dkim_selector"] == DKIM_SELECTOR
        del section["socket_group"]
        assert plab.smtp_address is not None
        section.update(
            collector_socket=str(plab.postfix.tlsrpt_socket),
            socket_mode="0666",
            store={"path": str(workdir / "tlsrpt.sqlite3")},
            smtp_host=plab.smtp_address[0],
            smtp_port=plab.smtp_address[1],
            smtp_timeout=20,
            https_timeout=20,
            dkim_key=str(DKIM.write_pem(workdir)),
            **https.reporter_settings(),
        )
        self.config = lab.write_config(workdir / "tlspolicy.yml", tlsrpt=section)
        self.log = workdir / "collect.log"
        self.process: subprocess.Popen[bytes] | None = None

    def collect(self, socket_path: Path) -> None:
        socket_path.unlink(missing_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                tlspolicy_command("tlsrpt", "collect", "-c", str(self.config)),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TLSPOLICY_TLSRPT_NOW": COLLECT_NOW, "PYTHONUNBUFFERED": "1"},
            )
        wait_until(socket_path.exists, timeout=15.0, what="the TLSRPT collector socket")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            assert self.process.wait(15) == 0, self.log.read_text()[-3000:]

    def run(self, *args: str, now: str = SEND_NOW) -> subprocess.CompletedProcess[str]:
        return tlspolicy("tlsrpt", *args, "-c", str(self.config), now=now)

    def json(self, *args: str, now: str = SEND_NOW) -> Any:
        done = self.run(*args, "--json", now=now)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    def counts(self, now: str = COLLECT_NOW) -> dict[str, tuple[int, int]]:
        """(successful, failed) per report domain on ``DAY``."""
        days = {d["day"]: d for d in self.json("status", now=now)["days"]}
        return {i["domain"]: (i["successful"], i["failed"]) for i in days[DAY]["domains"]}


@dataclass
class Outcome:
    """What the whole run produced, for the tests below to check."""

    shown: dict[str, dict[str, Any]] = field(default_factory=dict)
    status_before: dict[str, Any] = field(default_factory=dict)
    sent: str = ""
    again: str = ""
    status_after: dict[str, Any] = field(default_factory=dict)
    mails: list[Received] = field(default_factory=list)
    control: list[dict[str, Any]] = field(default_factory=list)
    transport_only: list[dict[str, Any]] = field(default_factory=list)
    transport_rcpt: str = ""
    after_reports: list[dict[str, Any]] = field(default_factory=list)
    posts_after_send: int = 0
    seconds: float = 0.0


def expected_counts(domain: str) -> tuple[int, int]:
    times, status, *_ = CASES[domain]
    return (times, 0) if status == "sent" else (0, times)


@pytest.fixture(scope="module")
def plab(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostfixLab]:
    with start_postfix_lab(
        lab,
        tmp_path_factory.mktemp("postfix310-reports"),
        settings=main_cf_settings(),
        master_cf=readme_tlsrpt("master.cf"),
        smtpd=True,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def https_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsSink]:
    sink = HttpsSink(tmp_path_factory.mktemp("https-sink"))
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def outcome(
    lab: Lab, plab: PostfixLab, https_sink: HttpsSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outcome]:
    started = time.monotonic()
    record = f"v=TLSRPTv1; rua=mailto:{REPORT_ADDRESS},{https_sink.url('/report')}"
    for domain in CASES:
        lab.dns.set_records(f"_smtp._tls.{domain}", "TXT", [txt(record)])
    lab.dns.set_records(SINK_HOST, "A", [LOOPBACK])
    lab.dns.apply()
    reporter = Reporter(lab, plab, https_sink, tmp_path_factory.mktemp("reporter"))
    result = Outcome()
    try:
        plab.capture.stop()  # the collector takes the socket for the day's deliveries
        reporter.collect(plab.postfix.tlsrpt_socket)
        _deliver_the_day(plab)
        want = {d: expected_counts(d) for d in CASES}
        wait_until(lambda: reporter.counts() == want, timeout=WAIT_S, what=f"stored counts {want}")
        reporter.stop()
        plab.capture.start()  # from here on every datagram is only watched
        result.control = plab.deliver(REPORT_DOMAIN)[1]
        result.transport_rcpt, result.transport_only = _send_as_reporter(plab)
        result.status_before = reporter.json("status")
        result.shown = {d: reporter.json("show", d, "--day", DAY) for d in CASES}
        seen = len(plab.capture.datagrams)
        sent = reporter.run("send")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        result.sent = sent.stdout
        result.posts_after_send = len(https_sink.requests)
        wait_until(
            lambda: len(plab.sinks.for_rcpt(REPORT_ADDRESS)) >= len(CASES),
            timeout=WAIT_S,
            what="the report mails at the rua's MX sink",
        )
        wait_until(
            lambda: len(plab.postfix.log_lines(TLSRPT_LOG.pattern)) >= len(CASES),
            timeout=WAIT_S,
            what="Postfix's postfix/tlsrpt delivery lines",
        )
        plab.capture.barrier()  # libtlsrpt would have sent before Postfix logged the status
        result.after_reports = plab.capture.datagrams[seen:]
        again = reporter.run("send")
        assert again.returncode == 0, again.stdout + again.stderr
        result.again = again.stdout
        result.status_after = reporter.json("status")
        result.mails = plab.sinks.for_rcpt(REPORT_ADDRESS)
        result.seconds = time.monotonic() - started
        yield result
    finally:
        reporter.stop()
        lab.reset()


def _deliver_the_day(plab: PostfixLab) -> None:
    """Every delivery of ``CASES``, injected at once; each one's final status checked."""
    expected: dict[str, str] = {}
    for domain, (times, status, *_) in CASES.items():
        for _ in range(times):
            rcpt = plab.postfix.new_rcpt(domain)
            plab.postfix.send(rcpt)
            expected[rcpt] = status
    for rcpt, status in expected.items():
        delivery = plab.postfix.wait_delivery(rcpt)
        assert delivery.status == status, delivery.line


def _send_as_reporter(plab: PostfixLab) -> tuple[str, list[dict[str, Any]]]:
    """A message from the report sender, without ``TLS-Required``; its rcpt and datagrams."""
    postfix = plab.postfix
    plab.capture.barrier()
    seen = len(plab.capture.datagrams)
    rcpt = postfix.new_rcpt(REPORT_DOMAIN)
    message = f"From: {SENDER}\r\nTo: {rcpt}\r\nSubject: no header\r\n\r\nhello\r\n"
    sendmail = ["chroot", str(postfix.merged), "/usr/sbin/sendmail", "-i", "-f", SENDER]
    postfix.ns.run([*sendmail, "--", rcpt], input=message.encode())
    delivery = postfix.wait_delivery(rcpt)
    assert delivery.status == "sent", delivery.line
    plab.capture.barrier()
    return rcpt, plab.capture.datagrams[seen:]


def test_postfix_runs_the_readme_configuration(plab: PostfixLab, outcome: Outcome) -> None:
    postconf = plab.postfix.postconf
    assert postconf("-h", "smtp_tlsrpt_socket_name").strip() == "run/tlsrpt/tlsrpt.sock"
    transports = postconf("-h", "sender_dependent_default_transport_maps").strip()
    assert f"{SENDER}=tlsrpt-smtp:" in transports
    service = postconf("-M", "tlsrpt-smtp/unix").split()
    assert service[:8] == ["tlsrpt-smtp", "unix", "-", "-", "n", "-", "-", "smtp"]
    assert postconf("-P", "tlsrpt-smtp/unix/smtp_tlsrpt_enable").split()[-1] == "no"
    assert not plab.postfix.log_lines(r"warning|fatal|panic|Could not report"), plab.postfix.log()[
        -3000:
    ]
    assert outcome.seconds < 60, outcome.seconds


def test_show_gives_a_valid_report_with_the_deliveries_counts(outcome: Outcome) -> None:
    for domain, (times, _, policy_type, result) in CASES.items():
        report = outcome.shown[domain]
        validate_report(report)
        assert report["date-range"] == {
            "start-datetime": f"{DAY}T00:00:00Z",
            "end-datetime": f"{DAY}T23:59:59Z",
        }
        assert report["organization-name"] == "Example Networks"
        assert report["contact-info"] == f"postmaster@{SUBMITTER}"
        (item,) = report["policies"]
        assert item["policy"]["policy-type"] == policy_type, report
        ok, failed = expected_counts(domain)
        assert item["summary"] == {
            "total-successful-session-count": ok,
            "total-failure-session-count": failed,
        }
        if result is None:
            assert "failure-details" not in item
            continue
        (detail,) = item["failure-details"]
        assert detail["result-type"] == result
        assert detail["receiving-mx-hostname"] == f"mx.{domain}"
        assert detail["failed-session-count"] == times


def test_reports_are_due_before_now(outcome: Outcome) -> None:
    (yesterday,) = [d for d in outcome.status_before["days"] if d["day"] == DAY]
    due = {i["domain"]: i["due"] for i in yesterday["domains"]}
    assert set(due) == set(CASES)
    now = datetime.fromisoformat(SEND_NOW)
    assert all(datetime.fromisoformat(d) <= now for d in due.values()), due


def test_send_delivers_once_per_destination(
    outcome: Outcome, https_sink: HttpsSink, plab: PostfixLab
) -> None:
    sent = sorted(line.split()[1:] for line in outcome.sent.splitlines())
    expected = sorted(
        [domain, uri, "sent"]
        for domain in CASES
        for uri in (f"mailto:{REPORT_ADDRESS}", https_sink.url("/report"))
    )
    assert sent == expected, outcome.sent
    assert outcome.again.strip() == "nothing to send"
    assert len(outcome.mails) == len(CASES)
    assert len(https_sink.requests) == outcome.posts_after_send == len(CASES)
    (yesterday,) = [d for d in outcome.status_after["days"] if d["day"] == DAY]
    for item in yesterday["domains"]:
        assert [(d["state"], d["attempts"]) for d in item["deliveries"]] == [("sent", 1)] * 2
    submissions = plab.postfix.log_lines(r"postfix/smtpd\[\d+\]: \w+: client=")
    assert len(submissions) == len(CASES), submissions


def test_report_mail_leaves_through_the_tlsrpt_transport_without_datagrams(
    outcome: Outcome, plab: PostfixLab
) -> None:
    # The control: a plain delivery to the rua domain is reported (DANE, like rpt-dane.lab).
    (control,) = outcome.control
    assert control["d"] == REPORT_DOMAIN
    assert [p["policy-type"] for p in control["policies"]] == [1]
    assert outcome.after_reports == []
    assert outcome.transport_only == []  # the transport alone, without TLS-Required: No
    (line,) = plab.postfix.log_lines(rf"to=<{re.escape(outcome.transport_rcpt)}>")
    assert re.search(r"postfix/tlsrpt/smtp\[\d+\]: .* status=sent", line), line
    assert len(plab.postfix.log_lines(TLSRPT_LOG.pattern)) == len(CASES)
    plain = plab.postfix.log_lines(rf"postfix/smtp\[\d+\]: \w+: to=<{re.escape(REPORT_ADDRESS)}>")
    assert plain == []
    for mail in outcome.mails:
        assert (mail.host, mail.mail_from, mail.tls) == (GOOD_MX, SENDER, True)


def test_report_mail_is_an_rfc8460_report(outcome: Outcome) -> None:
    domains = []
    for mail in outcome.mails:
        msg = email.message_from_bytes(mail.data, policy=default)
        assert isinstance(msg, EmailMessage)
        domain = str(msg["TLS-Report-Domain"])
        domains.append(domain)
        report = outcome.shown[domain]
        assert msg.get_content_type() == "multipart/report"
        assert msg.get_param("report-type") == "tlsrpt"
        assert msg["TLS-Required"] == "No"
        assert msg["TLS-Report-Submitter"] == SUBMITTER
        assert dkim.verify(mail.data, dnsfunc=DKIM.dnsfunc, tlsrpt="strict"), domain
        assert msg["From"] == SENDER and msg["To"] == REPORT_ADDRESS
        assert msg["Subject"] == (
            f"Report Domain: {domain} Submitter: {SUBMITTER} Report-ID: <{report['report-id']}>"
        )
        text, attachment = msg.iter_parts()
        assert text.get_content_type() == "text/plain"
        assert attachment.get_content_type() == "application/tlsrpt+gzip"
        name = attachment.get_filename() or ""
        assert f'filename="{name}"'.encode() in mail.data  # plain, not RFC 2231 pieces
        assert re.fullmatch(rf"{re.escape(SUBMITTER)}!{re.escape(domain)}!\d+!\d+!\S+\.json\.gz",
                            name), name  # fmt: skip
        payload = attachment.get_payload(decode=True)
        assert isinstance(payload, bytes) and payload[:2] == b"\x1f\x8b"
        assert json.loads(gzip.decompress(payload)) == report
    assert sorted(domains) == sorted(CASES)


def test_https_posts_are_the_reports(outcome: Outcome, https_sink: HttpsSink) -> None:
    reports = []
    for post in https_sink.requests:
        assert post.path == "/report"
        assert post.headers["Content-Type"] == "application/tlsrpt+gzip"
        reports.append(json.loads(gzip.decompress(post.body)))
    assert sorted(reports, key=lambda r: r["report-id"]) == sorted(
        outcome.shown.values(), key=lambda r: r["report-id"]
    )
