"""The report as an email (RFC 8460 §5.3), and as the gzip body HTTPS posts (§5.2, §5.4).

Rules kept here:

* ``multipart/report; report-type="tlsrpt"``: a ``text/plain`` part for people, then the
  report as ``application/tlsrpt+gzip`` named
  ``<submitter>!<policy-domain>!<begin>!<end>!<unique>.json.gz`` (§5.1; Unix times of the
  date range; ``unique`` from the report id).
* Headers ``TLS-Report-Domain``, ``TLS-Report-Submitter`` (§5.3, the submitter is the
  domain of ``contact-info``), ``TLS-Required: No`` (RFC 8689: Postfix 3.10 then delivers
  despite TLS failures and skips TLSRPT for this message), Subject
  ``Report Domain: <d> Submitter: <s> Report-ID: <id>`` (§5.3).
* DKIM (§3: mailto reports MUST be signed, without ``l=``): when a key is given, dkimpy
  signs From, To, Subject, Date, Message-ID, both TLS-Report headers and the MIME headers.
  The key's DNS record should say ``s=tlsrpt``.
* gzip with mtime 0, so one report always compresses to the same bytes.
* Header lines are not folded below RFC 5322's 998-octet limit (``HEADER_POLICY``): at 78,
  Python folds the long attachment name into RFC 2231 pieces (``filename*0*=``), which
  receivers that look only for ``filename="..."`` do not see. The name is plain ASCII, so
  a plain quoted ``filename`` is always right.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

HEADER_POLICY = SMTP.clone(max_line_length=998)  # RFC 5322 §2.1.1; see the module doc

SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"TLS-Report-Domain",
    b"TLS-Report-Submitter",
    b"TLS-Required",
    b"MIME-Version",
    b"Content-Type",
)


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A DKIM signing key: PEM private key bytes, selector, signing domain."""

    private_key: bytes
    selector: str
    domain: str


def compress(report_json: bytes) -> bytes:
    """The ``application/tlsrpt+gzip`` body (deterministic)."""
    return gzip.compress(report_json, compresslevel=9, mtime=0)


def report_filename(report: dict[str, Any], *, submitter: str, domain: str) -> str:
    """``submitter!policy-domain!begin!end!unique.json.gz`` (RFC 8460 §5.1)."""
    begin = _epoch(report["date-range"]["start-datetime"])
    end = _epoch(report["date-range"]["end-datetime"])
    unique = report["report-id"].split("@", 1)[0].rsplit(".", 1)[-1]
    return f"{submitter}!{domain}!{begin}!{end}!{unique}.json.gz"


def build_message(
    report: dict[str, Any],
    gzipped: bytes,
    *,
    domain: str,
    submitter: str,
    sender: str,
    recipient: str,
    now: datetime,
    dkim_key: DkimKey | None = None,
) -> bytes:
    """The complete message, CRLF line ends, DKIM-signed when ``dkim_key`` is given."""
    rid = report["report-id"]
    msg = EmailMessage(policy=HEADER_POLICY)
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = f"Report Domain: {domain} Submitter: {submitter} Report-ID: <{rid}>"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<{rid.replace('@', '.' + _token(recipient) + '@', 1)}>"
    msg["TLS-Report-Domain"] = domain
    msg["TLS-Report-Submitter"] = submitter
    msg["TLS-Required"] = "No"
    msg.set_content(_summary_text(report, domain=domain, submitter=submitter))
    msg.add_attachment(
        gzipped,
        maintype="application",
        subtype="tlsrpt+gzip",
        filename=report_filename(report, submitter=submitter, domain=domain),
    )
    msg.replace_header("Content-Type", 'multipart/report; report-type="tlsrpt"')
    msg.set_boundary(f"tlsrpt-{_token(rid + recipient)}")
    data = msg.as_bytes()
    if dkim_key is None:
        return data
    import dkim  # noqa: PLC0415 - the [mail] extra, checked when the configuration loads

    signature = dkim.sign(
        data,
        dkim_key.selector.encode("ascii"),
        dkim_key.domain.encode("ascii"),
        dkim_key.private_key,
        include_headers=list(SIGNED_HEADERS),
        linesep=b"\r\n",
    )
    return bytes(signature) + data


def _summary_text(report: dict[str, Any], *, domain: str, submitter: str) -> str:
    ok = sum(p["summary"]["total-successful-session-count"] for p in report["policies"])
    failed = sum(p["summary"]["total-failure-session-count"] for p in report["policies"])
    dr = report["date-range"]
    return (
        f"This is an SMTP TLS report (RFC 8460) for {domain} from {submitter}.\n\n"
        f"Period: {dr['start-datetime']} to {dr['end-datetime']}\n"
        f"Successful TLS sessions: {ok}\nFailed TLS sessions: {failed}\n"
        f"Report-ID: {report['report-id']}\n\n"
        "The report itself is attached as application/tlsrpt+gzip.\n"
    )


def _epoch(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


def _token(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
