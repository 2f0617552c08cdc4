"""The _smtp._tls TXT record: strict RFC 8460 §3 parsing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.tlsrpt.test_datagram import FUZZ_EXAMPLES
from tlspolicy.dnsdata import TxtRecord
from tlspolicy.errors import RecordSyntaxError
from tlspolicy.tlsrpt.record import Destination, parse_record, select_record


def txt(*strings: str) -> TxtRecord:
    return TxtRecord(tuple(s.encode() for s in strings))


V = "v=TLSRPTv1"
A, B = "mailto:a@x.example", "mailto:b@x.example"
GOOD = [
    (f"{V}; rua={A}", [A], "mailto"),
    (f"{V};rua=https://r.example.com/v1", ["https://r.example.com/v1"], "https"),
    (f"{V}; rua={A} , https://r.x.example/;", [A, "https://r.x.example/"], "two-trailing-delim"),
    (f"{V} ; ext=1 ; rua={A}", [A], "extension-first"),
    (f"{V}; rua=mailto:a%2Bb@x.example?subject=hi", ["mailto:a+b@x.example"], "query-dropped"),
    (f"{V}; rua={A}%2Cb@x.example", [A, B], "encoded-comma"),
    (f"{V}; rua={A}; rua={A},{B}", [A, B], "several-rua"),
]


@pytest.mark.parametrize(("text", "uris"), [pytest.param(t, u, id=i) for t, u, i in GOOD])
def test_record_parse_good(text: str, uris: list[str]) -> None:
    assert [d.uri for d in parse_record(text).destinations] == uris


def test_record_unsupported_scheme_is_skipped_not_fatal() -> None:
    record = parse_record("v=TLSRPTv1; rua=http://r.example/,ftp:x,mailto:a@x.example")
    assert record.destinations == (Destination("mailto:a@x.example", "mailto", "a@x.example"),)
    assert record.unsupported == ("http://r.example/", "ftp:x")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("v=TLSRPTv1", id="no-fields"),
        pytest.param("v=TLSRPTv1;", id="only-delim"),
        pytest.param("v=TLSRPTv1; ext=1", id="no-rua"),
        pytest.param("v=TLSRPTv1; rua=", id="empty-rua"),
        pytest.param("v=TLSRPTv1; rua=mailto:a@x.example mailto:b@x.example", id="space-separated"),
        pytest.param("v=TLSRPTv1; rua=mailto:a@x.example,", id="dangling-comma"),
        pytest.param("v=TLSRPTv1; rua=nocolon", id="not-a-uri"),
        pytest.param("v=TLSRPTv1 rua=mailto:a@x.example", id="missing-delim"),
        pytest.param("v=TLSRPTv1; rua=mailto:\u00e9@x.example", id="non-ascii"),
        pytest.param("v=TLSRPTv1; =x; rua=mailto:a@x.example", id="bad-extension"),
        pytest.param("v=TLSRPTv2; rua=mailto:a@x.example", id="version"),
    ],
)
def test_record_parse_bad(text: str) -> None:
    with pytest.raises(RecordSyntaxError):
        parse_record(text)


def test_record_select_joins_strings_and_ignores_other_txt() -> None:
    found = select_record(
        [txt("google-site-verification=x"), txt("v=TLSRPTv1; rua=mai", "lto:a@x.example")]
    )
    assert found is not None and found.destinations[0].target == "a@x.example"


def test_record_select_none_without_candidates() -> None:
    assert select_record([txt("v=spf1 -all"), txt("v=TLSRPTv1x; rua=mailto:a@b.c")]) is None


def test_record_select_several_candidates_is_an_error() -> None:
    with pytest.raises(RecordSyntaxError, match="exactly one"):
        select_record([txt("v=TLSRPTv1; rua=mailto:a@b.c"), txt("v=TLSRPTv1;rua=mailto:d@b.c")])


def test_record_select_non_ascii_bytes_is_an_error() -> None:
    with pytest.raises(RecordSyntaxError):
        select_record([TxtRecord((b"v=TLSRPTv1; rua=mailto:\xff@b.c",))])


def test_record_https_without_host_is_unsupported() -> None:
    assert parse_record("v=TLSRPTv1; rua=https:/x").unsupported == ("https:/x",)


RECORD_ALPHABET = st.sampled_from(
    [*"v=TLSRPTv1;rua:,@%2C/ \t\x00\u00e9ab.", "mailto:", "https://", "rua=", "v=TLSRPTv1;"]
)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.lists(st.lists(RECORD_ALPHABET, max_size=30).map("".join), max_size=3))
def test_record_property_only_record_syntax_error(texts: list[str]) -> None:
    with contextlib.suppress(RecordSyntaxError):
        select_record([TxtRecord((t.encode("utf-8"),)) for t in texts])
