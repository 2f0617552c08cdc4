from __future__ import annotations

import hashlib

import pytest

from tests.unit.check.helpers import NOW, Chain
from tlspolicy.check.certs import cert_info, days_left, load, name_matches, tlsa_match
from tlspolicy.dnsstub.data import TlsaRecord


def test_certs_info_names_and_days_left() -> None:
    chain = Chain("mx.example.com", "*.example.net", days=20)
    info = cert_info(chain.der[0])
    assert info is not None
    assert info.names == ("mx.example.com", "*.example.net")
    assert days_left(info, NOW) == 20
    assert cert_info(b"junk") is None


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("mx.example.com", True),
        ("MX.Example.COM", True),
        ("a.example.net", True),
        ("a.b.example.net", False),  # a wildcard is exactly one label
        ("example.net", False),
        ("other.example.com", False),
    ],
)
def test_certs_name_matches_rfc6125_wildcards(host: str, ok: bool) -> None:
    assert name_matches(("mx.example.com", "*.example.net"), host) is ok


def test_certs_name_falls_back_to_cn_without_san() -> None:
    chain = Chain()
    info = cert_info(chain.der[0])
    assert info is not None and info.names == ("nameless",)


def test_certs_tlsa_dane_ee_matches_leaf_spki_and_full_cert() -> None:
    chain = Chain("mx.example.com")
    leaf, _ = chain.der
    assert tlsa_match(chain.ee_311(), chain.der, "mx.example.com")[0]
    assert tlsa_match(TlsaRecord(3, 0, 0, leaf), chain.der, "any.name")[0]  # no name checks
    sha512 = TlsaRecord(3, 0, 2, hashlib.sha512(leaf).digest())
    assert tlsa_match(sha512, chain.der, "mx.example.com")[0]
    ok, why = tlsa_match(TlsaRecord(3, 1, 1, b"\0" * 32), chain.der, "mx.example.com")
    assert (ok, why) == (False, "does not match the server certificate")


def test_certs_tlsa_dane_ta_needs_the_ca_in_the_chain_and_the_name() -> None:
    chain = Chain("mx.example.com")
    ok, why = tlsa_match(chain.ta_201(), chain.der, "mx.example.com")
    assert ok and why.startswith("matches chain certificate 1")
    assert tlsa_match(chain.ta_201(), chain.der, "other.example.com") == (
        False,
        "matches chain certificate 1, but the leaf does not name other.example.com",
    )
    assert tlsa_match(chain.ta_201(), chain.der[:1], "mx.example.com") == (
        False,
        "matches none of the CA certificates the server sent",
    )
    other = Chain("mx.example.com")
    forged = (other.der[0], chain.der[1])  # a CA that did not sign this leaf
    assert "does not verify" in tlsa_match(chain.ta_201(), forged, "mx.example.com")[1]


def test_load_a_certificate_with_an_invalid_version_is_none() -> None:
    """The fuzzer's find in dane/tlsa.py (X.509 version field 4) must not crash ``check``."""
    from tests.fuzztargets import CORPUS  # noqa: PLC0415

    data = (CORPUS / "tlsa" / "crash-invalid-x509-version").read_bytes()[3:]
    assert load(data) is None
