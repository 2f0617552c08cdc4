"""A DKIM signing key for tests, and the DNS record that publishes it (RFC 8460 §3 mode).

``dnsfunc`` answers dkimpy's key look-up for ``<selector>._domainkey.<domain>`` with the
record (``s=tlsrpt``, so ``dkim.verify(..., tlsrpt="strict")`` accepts it) and fails for
any other name, so a signature by another domain or selector does not verify.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_BITS = 2048


@dataclass
class DkimTestKey:
    selector: str
    domain: str
    _key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    )

    @property
    def pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    @property
    def record(self) -> bytes:
        public = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return b"v=DKIM1; k=rsa; s=tlsrpt; p=" + base64.b64encode(public)

    @property
    def name(self) -> bytes:
        return f"{self.selector}._domainkey.{self.domain}.".encode()

    def write_pem(self, directory: Path) -> Path:
        path = directory / f"dkim-{self.selector}.pem"
        path.write_bytes(self.pem)
        return path

    def dnsfunc(self, name: bytes, timeout: int = 5) -> bytes:
        if name.lower() != self.name.lower():
            raise LookupError(f"no DKIM key at {name!r}")
        return self.record
