"""The report email (RFC 8460 §5.3): MIME shape, headers, gzip attachment, DKIM."""

from __future__ import annotations

import base64
import email
import gzip
import json
from datetime import UTC, datetime
from email.message import Message
from email.policy import default

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

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
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; s=tlsrpt; p=" + base64.b64encode(public)
    raw = message(DkimKey(pem, "tlsrpt", "mx.example.net"))
    assert raw.startswith(b"DKIM-Signature:")
    assert b" l=" not in raw.split(b"\r\n\r\n", 1)[0]

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"tlsrpt._domainkey.mx.example.net."
        return record

    assert dkim.verify(raw, dnsfunc=dns, tlsrpt="strict")
    signed = email.message_from_bytes(raw, policy=default)["DKIM-Signature"]
    assert "tls-report-domain" in signed.lower() and "tls-report-submitter" in signed.lower()
