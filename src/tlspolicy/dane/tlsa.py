"""Which TLSA records an SMTP client can use (RFC 7672 §2.2, §3.1; RFC 6698 §4.1). Pure.

A secure TLSA RRset whose records are all unusable still commits the server to STARTTLS
(RFC 7672 §2.2.3), so "unusable" is a finding, not an error. Usable means what Postfix
and OpenSSL accept:

* usage DANE-TA(2) or DANE-EE(3); PKIX-TA(0)/PKIX-EE(1) are unusable for SMTP (§3.1.3);
* selector Cert(0) or SPKI(1);
* matching type Full(0), SHA2-256(1) or SHA2-512(2), with data of the right form: a
  digest of exactly the digest's length, or, for Full, DER that parses as what the
  selector names. OpenSSL's ``SSL_dane_tlsa_add`` parses Full data as a certificate
  (``d2i_X509``) or a SubjectPublicKeyInfo (``d2i_PUBKEY``) and rejects it otherwise.

Unlike postfix-tlspol, ``3 1 0`` with SPKI data is usable (tlspol requires a
certificate for every Full record, docs/protocol-notes.md §7.1).
"""

from __future__ import annotations

from tlspolicy.dnsstub.data import TlsaRecord

# cryptography (about 9 MB of memory) is imported only for Full (matching type 0) records,
# which are rare; warmup.py loads it before a privilege drop.

# RFC 7218 §2 acronyms, for explanations.
USAGE_NAMES = {0: "PKIX-TA", 1: "PKIX-EE", 2: "DANE-TA", 3: "DANE-EE"}
SELECTOR_NAMES = {0: "Cert", 1: "SPKI"}
MTYPE_NAMES = {0: "Full", 1: "SHA2-256", 2: "SHA2-512"}

# Usages an SMTP client supports (RFC 7672 §3.1): DANE-TA(2), DANE-EE(3).
USABLE_USAGES = frozenset({2, 3})

# Digest lengths in bytes of the hashed matching types (RFC 6698 §2.1.3; FIPS 180-4).
DIGEST_BYTES = {1: 32, 2: 64}


def tlsa_usable(record: TlsaRecord) -> tuple[bool, str]:
    """Whether an SMTP client can authenticate with ``record``, and why not.

    Returns:
        ``(True, "usable")`` or ``(False, <short reason for explain output>)``.
    """
    if record.usage not in USABLE_USAGES:
        name = USAGE_NAMES.get(record.usage, "unknown")
        return False, f"usage {record.usage} ({name}) is not usable for SMTP"
    if record.selector not in SELECTOR_NAMES:
        return False, f"unknown selector {record.selector}"
    if record.mtype in DIGEST_BYTES:
        want = DIGEST_BYTES[record.mtype]
        if len(record.data) != want:
            name = MTYPE_NAMES[record.mtype]
            return False, f"{name} data is {len(record.data)} bytes, expected {want}"
        return True, "usable"
    if record.mtype != 0:
        return False, f"unknown matching type {record.mtype}"
    if record.selector == 0:
        return _check_certificate(record.data)
    return _check_spki(record.data)


def _check_certificate(data: bytes) -> tuple[bool, str]:
    from cryptography import x509  # noqa: PLC0415 - see the imports above

    try:
        x509.load_der_x509_certificate(data)
    except (ValueError, x509.InvalidVersion):  # OpenSSL's d2i_X509 refuses both
        return False, "Full Cert data is not a DER X.509 certificate"
    return True, "usable"


def _check_spki(data: bytes) -> tuple[bool, str]:
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415
    from cryptography.hazmat.primitives.serialization import load_der_public_key  # noqa: PLC0415

    try:
        load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        return False, "Full SPKI data is not a DER SubjectPublicKeyInfo"
    return True, "usable"
