"""Certificate facts for the SMTP and DANE checks: names, validity, TLSA matching. Pure.

Rules kept here:
* Host names are matched against the leaf's subjectAltName DNS-IDs (the common name only
  when there is no DNS-ID, as OpenSSL does); a wildcard stands for exactly one whole
  leftmost label (RFC 6125 §6.4.3 as RFC 8461 §4.1 uses it; ``mtasts.policy.mx_matches``).
* Validity is judged at ``now``, which the caller passes in.
* TLSA matching (RFC 6698 §2.1; RFC 7672 §3.1): selector Cert(0) hashes the whole DER
  certificate, SPKI(1) its SubjectPublicKeyInfo; DANE-EE(3) is compared with the leaf only
  (no name or expiry checks), DANE-TA(2) with the CA certificates the server sent, and the
  chain from the leaf up to the matching CA must verify, with the leaf naming the host.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from tlspolicy.dnsstub.data import TlsaRecord
from tlspolicy.mtasts.policy import mx_matches

EXPIRY_WARNING_DAYS = 14  # warn when the certificate expires within two weeks


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What the report shows about one certificate."""

    subject: str
    issuer: str
    names: tuple[str, ...]  # DNS-IDs (or the CN when there is none)
    not_before: datetime.datetime
    not_after: datetime.datetime
    sha256: str

    def describe(self) -> str:
        return (
            f"subject {self.subject}; issuer {self.issuer}; names {', '.join(self.names) or '-'}; "
            f"valid {self.not_before:%Y-%m-%d} to {self.not_after:%Y-%m-%d}; sha256 {self.sha256}"
        )


def load(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion):  # as dane/tlsa.py: not a certificate
        return None


def cert_info(der: bytes) -> CertInfo | None:
    cert = load(der)
    if cert is None:
        return None
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        names=dns_names(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256=hashlib.sha256(der).hexdigest(),
    )


def dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        names: list[str] = []
    else:
        names = [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
    if not names:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(n.lower() for n in names)


def name_matches(names: Sequence[str], host: str) -> bool:
    """Does one of the certificate names cover ``host``?"""
    return any(mx_matches(name, host) for name in names)


def days_left(info: CertInfo, now: datetime.datetime) -> int:
    """Whole days until ``not_after`` (negative once expired)."""
    return (info.not_after - now) // datetime.timedelta(days=1)


def tlsa_digest(record: TlsaRecord, cert: x509.Certificate) -> bytes | None:
    """The certificate data as ``record`` selects and hashes it; None if unsupported."""
    if record.selector == 0:
        data = cert.public_bytes(serialization.Encoding.DER)
    elif record.selector == 1:
        data = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        return None
    if record.mtype == 0:
        return data
    if record.mtype == 1:
        return hashlib.sha256(data).digest()
    if record.mtype == 2:
        return hashlib.sha512(data).digest()
    return None


def tlsa_match(record: TlsaRecord, chain: Sequence[bytes], host: str) -> tuple[bool, str]:
    """Does the presented ``chain`` (DER, leaf first) satisfy ``record``, and how?"""
    certs = [load(der) for der in chain]
    if not certs or certs[0] is None:
        return False, "no usable server certificate"
    leaf = certs[0]
    if record.usage == 3:
        if tlsa_digest(record, leaf) == record.data:
            return True, "matches the server certificate (DANE-EE)"
        return False, "does not match the server certificate"
    if record.usage != 2:
        return False, "usage not supported for SMTP"
    for index, cert in enumerate(certs[1:], start=1):
        if cert is None or tlsa_digest(record, cert) != record.data:
            continue
        if not _chain_links(certs[: index + 1]):
            return False, f"matches chain certificate {index}, but the chain does not verify"
        if not name_matches(dns_names(leaf), host):
            return False, f"matches chain certificate {index}, but the leaf does not name {host}"
        return True, f"matches chain certificate {index}: {cert.subject.rfc4514_string()}"
    return False, "matches none of the CA certificates the server sent"


def _chain_links(certs: Sequence[x509.Certificate | None]) -> bool:
    """Each certificate is signed by the next one."""
    for child, parent in itertools.pairwise(certs):
        if child is None or parent is None:
            return False
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            return False
    return True
