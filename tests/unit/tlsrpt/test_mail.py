"""The report email (RFC 8460 §5.3): MIME shape, headers, gzip attachment, DKIM."""

from __future__ import annotations

import email
import gzip
import json
from datetime import UTC, datetime
from email.message import Message
from email.policy import default

import dkim

from tests.lab.dkimkey import DkimTestKey
from tests.schemas import validate_report
from tests.unit.tlsrpt.test_report import build
from tlspolicy.tlsrpt.mail import DkimKey, build_message, compress, report_filename
from tlspolicy.tlsrpt.report import format_report

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


def message(dkim_key: DkimKey | None = None) -> bytes:
    report = build()
    return build_message(
        report, compress(format_report(report)), domain="example.com",
        submitter="mx.example.net", sender="tlsrpt@mx.example.net",
        recipient="reports@example.com", now=NOW, dkim_key=dkim_key,
    )  # fmt: skip


def parts(raw: bytes) -> tuple[Message, list[Message]]:
    msg = email.message_from_bytes(raw, policy=default)
    return msg, list(msg.iter_parts())  # type: ignore[attr-defined]


def test_mail_headers_and_mime_structure() -> None:
    msg, (text, attachment) = parts(message())
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "tlsrpt"
    assert msg["TLS-Report-Domain"] == "example.com"
    assert msg["TLS-Report-Submitter"] == "mx.example.net"
    assert msg["TLS-Required"] == "No"
    rid = build()["report-id"]
    assert (
        msg["Subject"] == f"Report Domain: example.com Submitter: mx.example.net Report-ID: <{rid}>"
    )
    assert text.get_content_type() == "text/plain"
    assert "Failed TLS sessions: 3" in text.get_content()  # type: ignore[attr-defined]
    assert attachment.get_content_type() == "application/tlsrpt+gzip"
    name = attachment.get_filename()
    assert name is not None and name.startswith("mx.example.net!example.com!1796083200!1796169599!")
    assert name.endswith(".json.gz")
    report = json.loads(gzip.decompress(attachment.get_payload(decode=True)))  # type: ignore[arg-type]
    validate_report(report)
    assert report == build()


def test_mail_lines_end_in_crlf() -> None:
    raw = message()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


def test_mail_filename_matches_rfc_shape() -> None:
    name = report_filename(build(), submitter="s.example", domain="d.example")
    submitter, domain, begin, end, unique = name.removesuffix(".json.gz").split("!")
    assert (submitter, domain, int(end) - int(begin)) == ("s.example", "d.example", 86399)
    assert unique


def test_mail_gzip_is_deterministic() -> None:
    body = format_report(build())
    assert compress(body) == compress(body) and compress(body)[:2] == b"\x1f\x8b"


def test_mail_dkim_signature_verifies_with_tlsrpt_service_type() -> None:
    key = DkimTestKey("tlsrpt", "mx.example.net")
    raw = message(DkimKey(key.pem, "tlsrpt", "mx.example.net"))
    assert raw.startswith(b"DKIM-Signature:")
    assert b" l=" not in raw.split(b"\r\n\r\n", 1)[0]
    assert dkim.verify(raw, dnsfunc=key.dnsfunc, tlsrpt="strict")
    signed = email.message_from_bytes(raw, policy=default)["DKIM-Signature"]
    assert "tls-report-domain" in signed.lower() and "tls-report-submitter" in signed.lower()


def test_mail_attachment_has_a_plain_quoted_filename() -> None:
    """Not RFC 2231 pieces (filename*0*=): receivers that look for filename= must find it."""
    raw = message()
    assert b"filename*" not in raw
    name = report_filename(build(), submitter="mx.example.net", domain="example.com")
    assert f'filename="{name}"'.encode() in raw
    _, (_, attachment) = parts(raw)
    assert attachment.get_filename() == name
