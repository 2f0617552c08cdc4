"""The _smtp._tls TXT record: strict RFC 8460 §3 parsing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.tlsrpt.test_datagram import FUZZ_EXAMPLES
from tlspolicy.dnsstub.data import TxtRecord
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
    assert record.destinations == (
        Destination("mailto:a@x.example", "mailto", "a@x.example", host="x.example"),
    )
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


LONG_LABEL = "a" * 64


@pytest.mark.parametrize(
    "uri",
    [
        "https://127.0.0.1:6379/x",
        "https://[::1]:8080/admin",
        "https://10.0.0.1/",
        "https://169.254.169.254/latest/meta-data/",
        "https://0x7f000001/",
        "https://2130706433/",
        "https://1.2.3.0x7f/",
        "https://localhost/",
        f"https://{LONG_LABEL}.example/",
        "https://a..b/",
        "https://-a.example/",
        "https://xn--a.example/",
        "https://" + ".".join(["abcdefghi"] * 26) + ".example/",
        "https://user@r.example/",
        "https://r.example%2e/",
        "https://r.example:0/",
        "https://r.example:99999/",
        "https://r.example:x/",
        "https:/r.example/",
        "mailto:a%3C@x.example",
        "mailto:a%00b@x.example",
        "mailto:%E9@x.example",
        "mailto:root(@evil.example",
        "mailto:a%3Eb@evil.example",
        "mailto:a:b@evil.example",
        "mailto:%22root%22@evil.example",
        "mailto:a..b@evil.example",
        "mailto:.a@evil.example",
        "mailto:a@[127.0.0.1]",
        "mailto:a@localhost",
        "mailto:a@127.0.0.1",
        f"mailto:{'a' * 65}@evil.example",
        "mailto:a@evil.example@x.example",
    ],
)
def test_record_hostile_destinations_are_unsupported(uri: str) -> None:
    record = parse_record(f"v=TLSRPTv1; rua={uri},mailto:ok@x.example")
    assert [d.uri for d in record.destinations] == ["mailto:ok@x.example"], uri
    assert record.unsupported == (uri,)


@pytest.mark.parametrize(
    "uri",
    [
        "mailto:x%zz@example.com",
        "mailto:x%4@example.com",
        "mailto:a b@evil.example",
        "https://r.example/<x>",
        'https://r.example/"x"',
        "https://r.example/a\\b",
        "https://r.example/^",
        "https://r.example/`",
        "https://r.example/{x}",
        "https://r.example/a|b",
    ],
)
def test_record_uri_outside_rfc3986_breaks_the_record(uri: str) -> None:
    with pytest.raises(RecordSyntaxError, match="rua URI"):
        parse_record(f"v=TLSRPTv1; rua={uri}")


def test_record_https_destination_is_rebuilt_from_checked_parts() -> None:
    (dest,) = parse_record("v=TLSRPTv1; rua=https://R.Example:8443/v1?a=b").destinations
    assert (dest.host, dest.port, dest.target) == (
        "r.example",
        8443,
        "https://r.example:8443/v1?a=b",
    )
    (dest,) = parse_record("v=TLSRPTv1; rua=https://xn--bcher-kva.example").destinations
    assert (dest.host, dest.port, dest.target) == (
        "xn--bcher-kva.example",
        443,
        "https://xn--bcher-kva.example/",
    )


def test_record_caps_destinations_per_record_and_per_host() -> None:
    many = ",".join(f"mailto:r{i}@d{i}.example" for i in range(4000))
    record = parse_record(f"v=TLSRPTv1; rua={many}")
    assert len(record.destinations) == 10
    assert len(record.dropped) == 3990
    same = ",".join(f"https://r.example/{i}" for i in range(5)) + ",mailto:a@r.example"
    record = parse_record(f"v=TLSRPTv1; rua={same}")
    assert [d.uri for d in record.destinations] == ["https://r.example/0", "https://r.example/1"]
    assert len(record.dropped) == 4
