"""Reports as three reporters make them, for the inbound tests: the RFC 8460 §4.5 example,
our own reporter (``report.build_report`` + ``mail.build_message``) and sys4's
tlsrpt-reporter (its own report rendering and mail building, run in-process)."""

from __future__ import annotations

import gzip
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.lab.dkimkey import DkimTestKey
from tlspolicy.tlsrpt.aggregate import GroupCounts, PolicyKey
from tlspolicy.tlsrpt.datagram import FailureDetail, PolicyType
from tlspolicy.tlsrpt.mail import DkimKey, build_message, compress
from tlspolicy.tlsrpt.report import build_report, format_report

# RFC 8460 §4.5, as printed (its additional-information URL is one string here; the RFC's
# line breaks inside it are page layout). It carries "failure-error-code", a field §4.4
# does not define: receivers must ignore it, not refuse the report.
RFC8460_EXAMPLE: dict[str, Any] = {
    "organization-name": "Company-X",
    "date-range": {"start-datetime": "2016-04-01T00:00:00Z",
                   "end-datetime": "2016-04-01T23:59:59Z"},
    "contact-info": "sts-reporting@company-x.example",
    "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
    "policies": [{
        "policy": {
            "policy-type": "sts",
            "policy-string": ["version: STSv1", "mode: testing",
                              "mx: *.mail.company-y.example", "max_age: 86400"],
            "policy-domain": "company-y.example",
            "mx-host": "*.mail.company-y.example",
        },
        "summary": {"total-successful-session-count": 5326, "total-failure-session-count": 303},
        "failure-details": [{
            "result-type": "certificate-expired",
            "sending-mta-ip": "2001:db8:abcd:0012::1",
            "receiving-mx-hostname": "mx1.mail.company-y.example",
            "failed-session-count": 100,
        }, {
            "result-type": "starttls-not-supported",
            "sending-mta-ip": "2001:db8:abcd:0013::1",
            "receiving-mx-hostname": "mx2.mail.company-y.example",
            "receiving-ip": "203.0.113.56",
            "failed-session-count": 200,
            "additional-information": "https://reports.company-x.example/"
                                      "report_info?id=5065427c-23d3#StarttlsNotSupported",
        }, {
            "result-type": "validation-failure",
            "sending-mta-ip": "198.51.100.62",
            "receiving-ip": "203.0.113.58",
            "receiving-mx-hostname": "mx-backup.mail.company-y.example",
            "failed-session-count": 3,
            "failure-error-code": "X509_V_ERR_PROOF_OF_POSSESSION",
        }],
    }],
}  # fmt: skip

OUR_DAY = date(2026, 6, 2)
OUR_DOMAIN = "rcpt.example"
OUR_SUBMITTER = "sender.example"


def our_report(*, domain: str = OUR_DOMAIN, rid: str = "20260602.rcpt.example.1@sender.example"):  # type: ignore[no-untyped-def]
    """A report of ours: 90 successful, 10 failed sessions (7 expired, 3 mismatch)."""
    sts = PolicyKey(PolicyType.STS, domain, ("version: STSv1", "mode: enforce",
                    f"mx: mx.{domain}", "max_age: 86400"), (f"mx.{domain}",))  # fmt: skip
    expired = FailureDetail(
        "certificate-expired", "192.0.2.1", f"mx2.{domain}", None, "198.51.100.2"
    )
    mismatch = FailureDetail(
        "certificate-host-mismatch", "192.0.2.1", f"mx.{domain}", None, "198.51.100.1"
    )
    group = GroupCounts(OUR_DAY, domain, "v=TLSRPTv1; rua=mailto:r@x", sts, 90, 10,
                        {expired: 7, mismatch: 3})  # fmt: skip
    return build_report(
        OUR_DAY, domain, [group], organization_name="Sender Org",
        contact_info=f"tlsrpt@{OUR_SUBMITTER}", rid=rid,
    )  # fmt: skip


def our_mail(report: dict[str, Any], key: DkimTestKey | None, *, domain: str = OUR_DOMAIN) -> bytes:
    dkim_key = None if key is None else DkimKey(key.pem, key.selector, key.domain)
    return build_message(
        report, compress(format_report(report)), domain=domain, submitter=OUR_SUBMITTER,
        sender=f"noreply@{OUR_SUBMITTER}", recipient=f"tlsrpt@{domain}",
        now=datetime(2026, 6, 3, 1, 0, tzinfo=UTC), dkim_key=dkim_key,
    )  # fmt: skip


@dataclass
class Sys4Output:
    report: dict[str, Any]  # as rendered by tlsrpt-reporter
    gzipped: bytes  # what its HTTP delivery posts
    mail: bytes  # what its mail delivery hands to sendmail


def sys4_reporter(tmp_path: Path, *, domain: str = OUR_DOMAIN) -> Sys4Output:
    """Run tlsrpt-reporter's report rendering and both deliveries in-process (its HTTP and
    sendmail commands are shell commands; here they write what they get to files)."""
    from tlsrpt_reporter import mapping, tlsrpt  # noqa: PLC0415 - the dev group has it

    day = "2026-06-02"
    mail_file, http_file = tmp_path / "sys4.eml", tmp_path / "sys4.json.gz"
    reportd = object.__new__(tlsrpt.TLSRPTReportd)
    reportd.cfg = SimpleNamespace(
        organization_name="sys4 test", contact_info="tlsrpt@sys4.example",
        sender_address="noreply@sys4.example", debug_send_mail_dest=None,
        debug_send_file_dest=None, debug_send_http_dest=None, compression_level=6,
        sendmail_script=f"cat > {mail_file}", sendmail_timeout=30,
        http_script=f"cat > {http_file} #", http_timeout=30,
    )  # fmt: skip
    reportd.con = sqlite3.connect(":memory:")
    for ddl in reportd._ddl():
        reportd.con.execute(ddl)
    reportd.destination_map = mapping.DestinationMap()
    reportd.schedule_report_delivery = lambda: 0
    policy = json.dumps({"policy-type": 2, "policy-domain": domain,
                         "policy-string": ["version: STSv1", "mode: enforce"],
                         "mx-host": [f"mx.{domain}"]})  # fmt: skip
    failure = json.dumps({"c": 204, "n": f"mx2.{domain}", "r": "198.51.100.2", "s": "192.0.2.9"})
    data = {"v=TLSRPTv1; rua=mailto:tlsrpt@" + domain: {
        policy: {"cntrtotal": 50, "cntrfailure": 5, "failures": {failure: 5}}}}  # fmt: skip
    reportd.con.execute(
        "INSERT INTO reportdata (day, domain, data, fetcher, fetcherindex, status)"
        " VALUES (?, ?, ?, 'f', 0, 'fetched')",
        (day, domain, json.dumps(data)),
    )
    reportd.create_report_for(day, domain)
    r_id, uniqid, text = reportd.con.execute("SELECT r_id, uniqid, report FROM reports").fetchone()
    reportd.send_out_report(day, domain, r_id, uniqid, f"mailto:tlsrpt@{domain}", text)
    reportd.send_out_report(day, domain, r_id, uniqid, "https://rcpt.example/tlsrpt", text)
    return Sys4Output(json.loads(text), http_file.read_bytes(), mail_file.read_bytes())


# One small policy, to make reports with many of them.
POLICY_ITEM: dict[str, Any] = {
    "policy": {"policy-type": "sts", "policy-domain": "rcpt.example"},
    "summary": {"total-successful-session-count": 1, "total-failure-session-count": 0},
}


def gz(report: dict[str, Any]) -> bytes:
    return gzip.compress(json.dumps(report).encode())
