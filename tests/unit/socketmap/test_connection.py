from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlspolicy.errors import ProtocolError
from tlspolicy.socketmap.connection import (
    MAX_QUERY_BYTES,
    MAX_REPLY_BYTES,
    NEED_DATA,
    LocalProtocolError,
    Request,
    SocketmapConnection,
    encode_reply,
)


def requests_from(data: bytes, *, eof: bool = True) -> list[Request]:
    conn = SocketmapConnection()
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    out: list[Request] = []
    while True:
        item = conn.next_request()
        if item is None or item is NEED_DATA:
            return out
        assert isinstance(item, Request)
        out.append(item)


def test_connection_parses_postfix_request() -> None:
    assert requests_from(b"19:postfix example.com,") == [Request("postfix", "example.com")]


def test_connection_parses_back_to_back_requests_in_order() -> None:
    data = b"11:QUERY a.com,11:QUERY b.com,21:QUERYwithTLSRPT c.com,"
    assert [r.key for r in requests_from(data)] == ["a.com", "b.com", "c.com"]


def test_connection_request_split_across_reads() -> None:
    conn = SocketmapConnection()
    raw = b"19:postfix example.com,"
    for i in range(len(raw) - 1):
        conn.receive_data(raw[i : i + 1])
        assert conn.next_request() is NEED_DATA
    conn.receive_data(raw[-1:])
    assert conn.next_request() == Request("postfix", "example.com")


def test_connection_request_without_key() -> None:
    assert requests_from(b"5:QUERY,") == [Request("QUERY", "")]


def test_connection_clean_eof_returns_none() -> None:
    conn = SocketmapConnection()
    conn.receive_data(b"")
    assert conn.next_request() is None


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"abc:QUERY x,", id="non-digit-length"),
        pytest.param(b"05:QUERY,", id="leading-zero"),
        pytest.param(b"5:QUERY;", id="bad-terminator"),
        pytest.param(b"10001:", id="too-long-declared"),
        pytest.param(b"999999", id="too-many-digits"),
        pytest.param(b"-1:", id="negative"),
        pytest.param(b" 5:QUERY,", id="leading-space"),
        pytest.param(b"11:QUERY a.c", id="truncated-at-eof"),
    ],
)
def test_connection_rejects_bad_framing(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        requests_from(data)


def test_connection_non_utf8_is_well_framed() -> None:
    # A key property, not a framing error: the key gets U+FFFD and then NOTFOUND (keys.py).
    data = b"7:QUERY \xff,9:QUERY a.b,"
    assert requests_from(data) == [Request("QUERY", "\ufffd"), Request("QUERY", "a.b")]


def test_connection_accepts_maximum_query_size() -> None:
    payload = b"Q " + b"a" * (MAX_QUERY_BYTES - 2)
    assert requests_from(b"%d:%s," % (len(payload), payload))[0].key == "a" * (MAX_QUERY_BYTES - 2)


def test_encode_reply_frames_notfound_with_space() -> None:
    assert encode_reply("NOTFOUND ") == b"9:NOTFOUND ,"


def test_encode_reply_refuses_empty_ok() -> None:
    for payload in ("OK", "OK ", "OK   "):
        with pytest.raises(LocalProtocolError):
            encode_reply(payload)


def test_encode_reply_refuses_oversized_reply() -> None:
    encode_reply("OK " + "a" * (MAX_REPLY_BYTES - 3))
    with pytest.raises(LocalProtocolError):
        encode_reply("OK " + "a" * (MAX_REPLY_BYTES - 2))


@given(st.binary(max_size=200))
def test_connection_arbitrary_bytes_parse_or_raise_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        requests_from(data)


@given(st.lists(st.text(min_size=0, max_size=50), max_size=5))
def test_connection_round_trip(keys: list[str]) -> None:
    data = b"".join(b"%d:%s," % (len(p), p) for p in (f"M {k}".encode() for k in keys))
    assert [r.key for r in requests_from(data)] == keys
