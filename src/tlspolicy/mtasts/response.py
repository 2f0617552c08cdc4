"""What a policy response must look like (RFC 8461 §3.2, §3.3). No I/O.

Shared by the HTTP client (``mtasts.http_client``) and its tests.
"""

from __future__ import annotations

from tlspolicy.errors import FetchError

MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3: suggested maximum policy size 64 kilobytes
READ_CHUNK_BYTES = 8192  # read granularity; the cap is checked after every chunk
CHARSETS = frozenset({"utf-8", "us-ascii"})  # RFC 8461 §3.2: charset=utf-8 or us-ascii


def check_media_type(value: str | None) -> None:
    """RFC 8461 §3.2: ``text/plain``; ``charset`` (if any) utf-8 or us-ascii."""
    if value is None:
        raise FetchError("content-type", "no Content-Type (need text/plain)")
    media_type, *parameters = value.split(";")
    if media_type.strip().lower() != "text/plain":
        raise FetchError("content-type", f"Content-Type {value.strip()!r} (need text/plain)")
    for parameter in parameters:
        name, _, raw = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = raw.strip().strip('"').lower()
            if charset not in CHARSETS:
                raise FetchError("content-type", f"charset {charset!r} (need utf-8 or us-ascii)")


def check_headers(status: int, reason: str, headers: dict[str, str]) -> None:
    """Refuse anything but a 200 ``text/plain`` response of at most ``MAX_POLICY_BYTES``
    without content coding (``headers``: lowercase names)."""
    if 300 <= status < 400:
        target = headers.get("location", "?")
        raise FetchError("redirect", f"HTTP {status} to {target} (not followed)")
    if status != 200:
        raise FetchError("status", f"HTTP {status} {reason}".rstrip())
    check_media_type(headers.get("content-type"))
    coding = headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        raise FetchError("encoding", f"unexpected Content-Encoding {coding!r}")
    length = headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > MAX_POLICY_BYTES:
        raise FetchError("too-large", f"Content-Length {int(length)}")
