"""Sans-IO socketmap connection: bytes in, requests out; replies in, bytes out.

Postfix frames each request and each reply as one netstring, ``<len>:<payload>,``
(``util/netstring.c``), sends ``NAME KEY`` and waits for the reply before the next request
(``util/dict_sockmap.c``). Other clients may send requests back to back; they are parsed in
order, and the server answers them in order.

Rules kept here:
- the length is ASCII digits only, no leading zeros (Postfix writes none), and at most
  ``MAX_QUERY_BYTES``; anything else is a ``ProtocolError`` and the connection must close;
- the payload must be followed by ``,``;
- a payload that is not UTF-8 is well framed: it is decoded with U+FFFD for the bad bytes,
  and such a key names no domain (``keys.normalize_key`` gives NOTFOUND). Postfix does the
  same with a key it cannot look up (``dict_utf8_lookup``: "non-UTF-8 key", not found);
  closing would turn one odd key into a lookup error and deferred mail;
- a reply payload never exceeds ``MAX_REPLY_BYTES`` (``LocalProtocolError`` otherwise:
  that is our bug, not the peer's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tlspolicy.errors import ProtocolError, TlsPolicyError

# socketmap_table(5) PROTOCOL LIMITS: Postfix sends queries of at most 10000 bytes
# (socketmap_max_query_size, 3.12) and accepts replies of at most 100000 bytes
# (socketmap_max_reply_size, 3.10; hard-coded before).
MAX_QUERY_BYTES: Final = 10000
MAX_REPLY_BYTES: Final = 100000
_MAX_LENGTH_DIGITS: Final = len(str(MAX_QUERY_BYTES))


class LocalProtocolError(TlsPolicyError):
    """We tried to send something Postfix would reject (a bug in the caller)."""


@dataclass(frozen=True, slots=True)
class Request:
    name: str  # the socketmap name from main.cf: selects the profile
    key: str  # the lookup key as sent ("" when the request had no space)


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


class SocketmapConnection:
    """Parses netstring requests from a byte stream.

    ``receive_data(b"")`` marks end of input. ``next_request()`` returns a ``Request``,
    ``NEED_DATA``, or ``None`` at a clean end of input; it raises ``ProtocolError`` on bad
    framing or a truncated request at end of input.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._eof = False

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
        else:
            self._buffer += data

    @property
    def idle(self) -> bool:
        """Nothing buffered and the input still open: the next bytes start a request."""
        return not self._buffer and not self._eof

    @property
    def at_eof(self) -> bool:
        """The peer has finished sending (``receive_data(b"")`` was called)."""
        return self._eof

    def next_request(self) -> Request | _NeedData | None:
        buf = self._buffer
        colon = buf.find(b":", 0, _MAX_LENGTH_DIGITS + 1)
        if colon < 0:
            head = bytes(buf[: _MAX_LENGTH_DIGITS + 1])
            if not head.isdigit() and head:
                raise ProtocolError(f"bad netstring length {_show(head)}")
            if len(buf) > _MAX_LENGTH_DIGITS:
                raise ProtocolError(f"request longer than {MAX_QUERY_BYTES} bytes")
            return self._at_end()
        digits = bytes(buf[:colon])
        if not digits.isdigit():
            raise ProtocolError(f"bad netstring length {_show(digits)}")
        if len(digits) > 1 and digits.startswith(b"0"):
            raise ProtocolError(f"netstring length with leading zero {_show(digits)}")
        length = int(digits)
        if length > MAX_QUERY_BYTES:
            raise ProtocolError(f"request of {length} bytes exceeds {MAX_QUERY_BYTES}")
        end = colon + 1 + length
        if len(buf) <= end:
            return self._at_end()
        if buf[end] != ord(","):
            raise ProtocolError("netstring not terminated by ','")
        payload = bytes(buf[colon + 1 : end])
        del buf[: end + 1]
        text = payload.decode("utf-8", "replace")
        name, _, key = text.partition(" ")
        return Request(name=name, key=key)

    def _at_end(self) -> _NeedData | None:
        if not self._eof:
            return NEED_DATA
        if self._buffer:
            raise ProtocolError("connection closed in the middle of a request")
        return None


def encode_reply(payload: str) -> bytes:
    """Frame one reply; raises LocalProtocolError if Postfix would refuse it."""
    data = payload.encode("utf-8")
    if len(data) > MAX_REPLY_BYTES:
        raise LocalProtocolError(f"reply of {len(data)} bytes exceeds {MAX_REPLY_BYTES}")
    if data == b"OK" or (data.startswith(b"OK ") and not data[3:].strip()):
        raise LocalProtocolError("an empty OK reply is a lookup error in Postfix")
    return netstring(data)


def netstring(data: bytes) -> bytes:
    """``<length>:<data>,``: the framing of every request and reply."""
    return b"%d:%s," % (len(data), data)


def _show(raw: bytes) -> str:
    text = raw[:16].decode("ascii", "backslashreplace")
    return repr(text + ("..." if len(raw) > 16 else ""))
