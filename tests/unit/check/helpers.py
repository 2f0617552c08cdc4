"""Certificates and probe results for the ``check`` unit tests (cryptography, no network)."""

from __future__ import annotations

import datetime
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tlspolicy.check.session import ProbeResult, Stage, TlsSession
from tlspolicy.dnsstub.data import TlsaRecord

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Chain:
    """A CA and a leaf for ``names`` valid ``days`` more days from ``NOW``."""

    def __init__(self, *names: str, days: int = 60, start_days: int = -30) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(_name("test CA"))
            .issuer_name(_name("test CA"))
            .public_key(self.ca_key.public_key())
            .serial_number(1)
            .not_valid_before(NOW - datetime.timedelta(days=400))
            .not_valid_after(NOW + datetime.timedelta(days=400))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0] if names else "nameless"))
            .issuer_name(self.ca.subject)
            .public_key(self.key.public_key())
            .serial_number(2)
            .not_valid_before(NOW + datetime.timedelta(days=start_days))
            .not_valid_after(NOW + datetime.timedelta(days=days, hours=1))
        )
        if names:
            san = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
            builder = builder.add_extension(san, critical=False)
        self.leaf = builder.sign(self.ca_key, hashes.SHA256())

    @property
    def der(self) -> tuple[bytes, bytes]:
        enc = serialization.Encoding.DER
        return self.leaf.public_bytes(enc), self.ca.public_bytes(enc)

    def spki(self, cert: x509.Certificate) -> bytes:
        return cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def ee_311(self) -> TlsaRecord:
        return TlsaRecord(3, 1, 1, hashlib.sha256(self.spki(self.leaf)).digest())

    def ta_201(self) -> TlsaRecord:
        return TlsaRecord(2, 0, 1, hashlib.sha256(self.der[1]).digest())


def done(
    host: str, chain: Chain, *, verify_error: str = "", address: str = "192.0.2.1"
) -> ProbeResult:
    tls = TlsSession("TLSv1.3", "TLS_AES_256_GCM_SHA384", chain.der, verify_error)
    return ProbeResult(host, address, 25, Stage.DONE, "", "mx ESMTP", True, tls, 3.0)


def failed(host: str, stage: Stage, error: str, *, starttls: bool = False) -> ProbeResult:
    return ProbeResult(host, "192.0.2.1", 25, stage, error, "mx ESMTP", starttls)
