"""tlsa_usable: which TLSA records an SMTP client can authenticate with."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from tlspolicy.dane.tlsa import tlsa_usable
from tlspolicy.dnsstub.data import TlsaRecord


def _make_cert_and_spki() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.example")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return cert.public_bytes(Encoding.DER), spki


CERT, SPKI = _make_cert_and_spki()
SHA256 = bytes(range(32))
SHA512 = bytes(range(64))


@pytest.mark.parametrize(
    ("record", "usable", "why"),
    [
        pytest.param(TlsaRecord(3, 1, 1, SHA256), True, "usable", id="dane-ee-spki-sha256"),
        pytest.param(TlsaRecord(2, 0, 2, SHA512), True, "usable", id="dane-ta-cert-sha512"),
        pytest.param(TlsaRecord(3, 0, 0, CERT), True, "usable", id="dane-ee-full-cert"),
        pytest.param(TlsaRecord(2, 0, 0, CERT), True, "usable", id="dane-ta-full-cert"),
        pytest.param(TlsaRecord(3, 1, 0, SPKI), True, "usable", id="dane-ee-full-spki"),
        pytest.param(TlsaRecord(2, 1, 0, SPKI), True, "usable", id="dane-ta-full-spki"),
        pytest.param(TlsaRecord(0, 0, 1, SHA256), False, "usage 0 (PKIX-TA)", id="pkix-ta"),
        pytest.param(TlsaRecord(1, 1, 1, SHA256), False, "usage 1 (PKIX-EE)", id="pkix-ee"),
        pytest.param(TlsaRecord(4, 1, 1, SHA256), False, "usage 4 (unknown)", id="usage-unknown"),
        pytest.param(
            TlsaRecord(3, 2, 1, SHA256), False, "unknown selector 2", id="selector-unknown"
        ),
        pytest.param(
            TlsaRecord(3, 1, 3, SHA256), False, "unknown matching type 3", id="mtype-unknown"
        ),
        pytest.param(
            TlsaRecord(3, 1, 255, SHA256), False, "unknown matching type 255", id="mtype-private"
        ),
        pytest.param(
            TlsaRecord(3, 1, 1, SHA256[:31]), False, "31 bytes, expected 32", id="sha256-short"
        ),
        pytest.param(TlsaRecord(3, 1, 1, SHA512), False, "64 bytes, expected 32", id="sha256-long"),
        pytest.param(
            TlsaRecord(3, 1, 2, SHA256), False, "32 bytes, expected 64", id="sha512-short"
        ),
        pytest.param(TlsaRecord(3, 1, 1, b""), False, "0 bytes", id="sha256-empty"),
        pytest.param(
            TlsaRecord(3, 0, 0, b"\xab\xcd"), False, "not a DER X.509", id="full-cert-junk"
        ),
        pytest.param(
            TlsaRecord(3, 0, 0, CERT + b"\x00"), False, "not a DER X.509", id="full-cert-trailing"
        ),
        pytest.param(
            TlsaRecord(3, 0, 0, SPKI), False, "not a DER X.509", id="full-cert-given-spki"
        ),
        pytest.param(
            TlsaRecord(3, 1, 0, CERT), False, "not a DER Subject", id="full-spki-given-cert"
        ),
        pytest.param(TlsaRecord(3, 1, 0, b""), False, "not a DER Subject", id="full-spki-empty"),
        pytest.param(
            TlsaRecord(3, 1, 0, SPKI[:-1]), False, "not a DER Subject", id="full-spki-cut"
        ),
    ],
)
def test_tlsa_usable(record: TlsaRecord, usable: bool, why: str) -> None:
    ok, reason = tlsa_usable(record)
    assert ok is usable
    assert why in reason
