"""Every parser raises only its own error type: the kept corpus, and hypothesis property tests.

The corpus (``tests/fuzz_corpus/<parser>/``: seeds and any crash ``bench/fuzz.py`` found)
runs through the same targets as the million-input atheris runs (``tests/fuzztargets.py``).
The property tests here cover the parsers that had none (key normalisation, TLSA data,
configuration) and the framing fed in pieces; MTA-STS and TLSRPT parsers have theirs in
``tests/unit/mtasts/test_properties.py`` and ``tests/unit/tlsrpt/``.
TLSPOLICY_FUZZ_EXAMPLES=1000000 runs them for a long fuzz session.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import fuzztargets
from tlspolicy.config import parse_config
from tlspolicy.errors import ConfigError

FUZZ_EXAMPLES = int(os.environ.get("TLSPOLICY_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None)

CASES = [(name, path) for name in fuzztargets.TARGETS for path in fuzztargets.corpus(name)]


@pytest.mark.parametrize(("name", "path"), CASES, ids=[f"{n}/{p.name}" for n, p in CASES])
def test_fuzz_corpus_input_raises_only_the_parsers_own_error(name: str, path: Path) -> None:
    fuzztargets.run(name, path.read_bytes())


def test_fuzz_corpus_has_seeds_for_every_parser() -> None:
    assert all(fuzztargets.corpus(name) for name in fuzztargets.TARGETS)


KEY_PARTS = st.sampled_from(
    ["", ".", "..", "[", "]", ":", ":25", ":smtp", "ipv6:", "::1", "192.0.2.1", "-", "a" * 63,
     "b" * 64, "xn--", "b\u00fccher", "\u00df", "\u0000", " ", "%eth0", "EXAMPLE", "com", "1"]
)  # fmt: skip


@FUZZ
@given(st.one_of(st.text(max_size=300), st.lists(KEY_PARTS, max_size=12).map("".join)))
def test_fuzz_normalize_key_never_raises(key: str) -> None:
    fuzztargets.keys(key.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.binary(max_size=300))
def test_fuzz_tlsa_usable_never_raises(usage: int, selector: int, mtype: int, data: bytes) -> None:
    fuzztargets.tlsa(bytes([usage, selector, mtype]) + data)


@FUZZ
@given(st.binary(max_size=120), st.lists(st.integers(0, 120), max_size=6))
def test_fuzz_netstring_in_pieces_parses_or_raises_protocol_error(
    data: bytes, cuts: list[int]
) -> None:
    from tlspolicy.errors import ProtocolError  # noqa: PLC0415
    from tlspolicy.socketmap.connection import NEED_DATA, SocketmapConnection  # noqa: PLC0415

    conn = SocketmapConnection()
    edges = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    try:
        for start, end in itertools.pairwise(edges):
            conn.receive_data(data[start:end])
            while conn.next_request() not in (None, NEED_DATA):
                pass
        conn.receive_data(b"")
        while conn.next_request() not in (None, NEED_DATA):
            pass
    except ProtocolError:
        pass


SECTIONS = ["server", "dns", "mta_sts", "dane", "cache", "maps", "tlsrpt", "bogus"]
CONFIG_KEYS = [
    "listen", "max_connections", "user", "nameservers", "timeout", "on_validation_failure",
    "ca_file", "allow_private_addresses", "backend", "path", "url", "hot_ttl", "hot_entries",
    "QUERY", "enabled", "refresh_before", "x",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["127.0.0.1:8642", "unix:/run/x", "[::1]:53", "redis", "sqlite", "temp",
                     "continue", "memory", "postgres", "1.5", "inf", "nan"]),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(CONFIG_KEYS), inner, max_size=4),
    ),
    max_leaves=12,
)


@FUZZ
@given(
    st.one_of(
        VALUES,
        st.dictionaries(
            st.sampled_from(SECTIONS),
            st.one_of(VALUES, st.dictionaries(st.sampled_from(CONFIG_KEYS), VALUES, max_size=5)),
            max_size=4,
        ),
    )
)
def test_fuzz_parse_config_raises_only_config_error(data: Any) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(data)


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_load_config_text_raises_only_config_error(text: str) -> None:
    fuzztargets.run("config", text.encode("utf-8", "surrogatepass"))


def test_fuzz_found_tlsa_full_cert_with_version_4_is_unusable_not_an_exception() -> None:
    """atheris found it: cryptography raises InvalidVersion (not ValueError) for version 4."""
    from tlspolicy.dane.tlsa import tlsa_usable  # noqa: PLC0415
    from tlspolicy.dnsstub.data import TlsaRecord  # noqa: PLC0415

    data = (fuzztargets.CORPUS / "tlsa" / "crash-invalid-x509-version").read_bytes()[3:]
    assert tlsa_usable(TlsaRecord(3, 0, 0, data)) == (
        False,
        "Full Cert data is not a DER X.509 certificate",
    )


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_dns_response_raises_only_format_or_dns_errors(data: bytes) -> None:
    fuzztargets.run("dns_response", data)
