"""The ``_smtp._tls`` TXT record (RFC 8460 §3): strict parsing and selection.

RFC 8460 §3 (RFC 7405 ABNF)::

    tlsrpt-record    = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
    field-delim      = *WSP ";" *WSP
    tlsrpt-field     = tlsrpt-rua / tlsrpt-extension   ; tlsrpt-rua is required
    tlsrpt-version   = %s"v=TLSRPTv1"
    tlsrpt-rua       = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
    tlsrpt-uri       = URI        ; "," "!" and ";" percent-encoded
    tlsrpt-extension = tlsrpt-ext-name "=" tlsrpt-ext-value
    tlsrpt-ext-name  = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
    tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)

Rules kept here:

* Candidates are the TXT RRs that begin with ``v=TLSRPTv1``, optional WSP and ``;`` (the
  strings of one RR joined without a separator), the same test Postfix applies. No candidate:
  ``None``; several: ``RecordSyntaxError`` (RFC 8460 §3: then the domain has no policy).
* The candidate must match the grammar in full (no naive split at ``;``), be US-ASCII, and
  carry a ``rua`` field. Extensions are kept but ignored. Several ``rua`` fields: their URIs
  are all used, in order, without duplicates.
* A URI whose scheme is neither ``mailto:`` nor ``https:`` (tlsrpt-reporter crashed on these)
  is valid syntax but cannot be served: it lands in ``unsupported`` and is skipped. A
  ``mailto:`` URI's address is the part before ``?``, percent-decoded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tlspolicy.dnsdata import TxtRecord
from tlspolicy.errors import RecordSyntaxError

VERSION = "v=TLSRPTv1"
_CANDIDATE_RE = re.compile(rb"v=TLSRPTv1[ \t]*;")
_DELIM_RE = re.compile(r"[ \t]*;[ \t]*")
_RUA_RE = re.compile(r"rua=")
_URI_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):([\x21-\x2b\x2d-\x3a\x3c-\x7e]+)")
_COMMA_RE = re.compile(r"[ \t]*,[ \t]*")
_EXT_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.\-]{0,31})=([\x21-\x3a\x3c\x3e-\x7e]+)")
_ADDRESS_RE = re.compile(r"[^@\s]+@[A-Za-z0-9.\-]+")
_PERCENT_RE = re.compile(r"%([0-9A-Fa-f]{2})")


@dataclass(frozen=True, slots=True)
class Destination:
    """One usable rua: ``method`` "mailto" (``target`` is the address) or "https" (URL).

    ``uri`` names the destination in the deliveries table: ``mailto:<address>`` (one per
    address of a multi-address mailto URI) or the https URL as published.
    """

    uri: str
    method: str
    target: str


@dataclass(frozen=True, slots=True)
class TlsrptRecord:
    destinations: tuple[Destination, ...]
    unsupported: tuple[str, ...] = ()
    extensions: tuple[tuple[str, str], ...] = ()


def parse_record(text: str) -> TlsrptRecord:
    """Parse one candidate record (its strings joined).

    Raises:
        RecordSyntaxError: the text breaks the RFC 8460 §3 grammar or has no ``rua``.
    """
    if not text.startswith(VERSION):
        raise RecordSyntaxError("TLSRPT record does not begin with v=TLSRPTv1")
    if not text.isascii():
        raise RecordSyntaxError("TLSRPT record is not US-ASCII")
    pos = len(VERSION)
    uris: list[str] = []
    extensions: list[tuple[str, str]] = []
    seen_rua = False
    fields = 0
    while pos < len(text):
        delim = _DELIM_RE.match(text, pos)
        if delim is None:
            raise RecordSyntaxError(f"expected ';' at offset {pos}: {text[pos : pos + 20]!r}")
        pos = delim.end()
        if pos == len(text):
            break
        fields += 1
        if _RUA_RE.match(text, pos):
            seen_rua = True
            pos = _parse_uris(text, pos + 4, uris)
            continue
        ext = _EXT_RE.match(text, pos)
        if ext is None or not _ends_field(text, ext.end()):
            raise RecordSyntaxError(f"bad field at offset {pos}: {text[pos : pos + 20]!r}")
        extensions.append((ext.group(1), ext.group(2)))
        pos = ext.end()
    if fields == 0 or not seen_rua:
        raise RecordSyntaxError("TLSRPT record has no rua field")
    destinations: list[Destination] = []
    unsupported: list[str] = []
    for uri in dict.fromkeys(uris):
        found = _destinations(uri)
        if found:
            destinations.extend(found)
        else:
            unsupported.append(uri)
    return TlsrptRecord(tuple(destinations), tuple(unsupported), tuple(extensions))


def select_record(records: Sequence[TxtRecord]) -> TlsrptRecord | None:
    """Pick and parse the one TLSRPT record of a ``_smtp._tls`` TXT RRset.

    Returns:
        ``None`` when no RR begins with ``v=TLSRPTv1;`` (the domain wants no reports).

    Raises:
        RecordSyntaxError: several candidates, or the only one is broken: no reports.
    """
    candidates = [b"".join(r.strings) for r in records]
    candidates = [c for c in candidates if _CANDIDATE_RE.match(c)]
    if not candidates:
        return None
    if len(candidates) > 1:
        raise RecordSyntaxError(f"{len(candidates)} TLSRPT records; exactly one is allowed")
    try:
        text = candidates[0].decode("ascii")
    except UnicodeDecodeError:
        raise RecordSyntaxError("TLSRPT record is not US-ASCII") from None
    return parse_record(text)


def _parse_uris(text: str, pos: int, uris: list[str]) -> int:
    while True:
        uri = _URI_RE.match(text, pos)
        if uri is None:
            raise RecordSyntaxError(f"bad rua URI at offset {pos}: {text[pos : pos + 30]!r}")
        uris.append(uri.group(0))
        pos = uri.end()
        comma = _COMMA_RE.match(text, pos)
        if comma is None:
            if not _ends_field(text, pos):
                raise RecordSyntaxError(f"bad rua URI at offset {pos}: {text[pos : pos + 30]!r}")
            return pos
        pos = comma.end()


def _ends_field(text: str, pos: int) -> bool:
    return pos == len(text) or _DELIM_RE.match(text, pos) is not None


def _destinations(uri: str) -> list[Destination]:
    scheme, _, rest = uri.partition(":")
    scheme = scheme.lower()
    if scheme == "https":
        host = rest.removeprefix("//").split("/", 1)[0].split("?", 1)[0]
        if not rest.startswith("//") or not host or "@" in host:
            return []
        return [Destination(uri, "https", "https:" + rest)]
    if scheme == "mailto":
        decoded = _PERCENT_RE.sub(lambda m: chr(int(m.group(1), 16)), rest.split("?", 1)[0])
        addresses = [a.strip() for a in decoded.split(",") if a.strip()]
        if not addresses or not all(_ADDRESS_RE.fullmatch(a) for a in addresses):
            return []
        return [Destination(f"mailto:{a}", "mailto", a) for a in addresses]
    return []
