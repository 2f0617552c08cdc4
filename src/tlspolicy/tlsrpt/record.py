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
* A URI must be RFC 3986 characters only: ``%`` followed by two hex digits, none of
  ``" < > \\ ^ ` { | }``, controls or spaces; anything else breaks the record.
* A URI whose scheme is neither ``mailto:`` nor ``https:`` (tlsrpt-reporter crashed on these)
  is valid syntax but cannot be served: it lands in ``unsupported`` and is skipped.

The record is chosen by the recipient domain, so every destination is hostile input until
checked here, at parse time, not when it is used:

* ``https:`` URIs need a host name: LDH labels of at most 63 octets, at least two labels, at
  most 253 characters, the last label starting with a letter, A-labels that IDNA decodes.
  IP literals (``https://127.0.0.1/``, ``https://[::1]/``, ``https://0x7f000001/``) and
  userinfo are unsupported: where a report goes is decided by DNS and the address guard
  (``deliver``), never by the record. The port is kept (``deliver`` allows only the
  configured ones); ``target`` is rebuilt from the checked parts.
* ``mailto:`` URIs: the part before ``?``, percent-decoded, split at ``,``; each address
  must be an RFC 5321 Mailbox of the plain kind: a dot-atom local part (RFC 5322 atext:
  no specials, controls, spaces or non-ASCII; at most 64 octets) ``@`` a host name as
  above. No comments, groups, quoted strings or address literals, so the address that is
  checked is the address that is mailed: a parser cannot read ``root(@evil.example`` as
  ``root``.
* At most ``MAX_DESTINATIONS`` destinations per record and ``MAX_PER_HOST`` per https
  host or mail domain, in record order; the rest land in ``dropped``. One hostile record
  must not make the reporter send thousands of reports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tlspolicy.config.defaults import HTTPS_PORT
from tlspolicy.dnsstub.data import TxtRecord
from tlspolicy.errors import RecordSyntaxError
from tlspolicy.names import host_name, mailbox

VERSION = "v=TLSRPTv1"
_CANDIDATE_RE = re.compile(rb"v=TLSRPTv1[ \t]*;")
_DELIM_RE = re.compile(r"[ \t]*;[ \t]*")
_RUA_RE = re.compile(r"rua=")
# RFC 3986 characters, without "," and ";" (RFC 8460 §3: percent-encoded in a tlsrpt-uri)
_URI_RE = re.compile(
    r"([A-Za-z][A-Za-z0-9+.\-]*):((?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+=]|%[0-9A-Fa-f]{2})+)"
)
_COMMA_RE = re.compile(r"[ \t]*,[ \t]*")
_EXT_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.\-]{0,31})=([\x21-\x3a\x3c\x3e-\x7e]+)")
_PERCENT_RE = re.compile(r"%([0-9A-Fa-f]{2})")

MAX_DESTINATIONS = 10  # destinations used per record, in record order
MAX_PER_HOST = 2  # of them per https host or mail domain


@dataclass(frozen=True, slots=True)
class Destination:
    """One usable rua: ``method`` "mailto" (``target`` is the address) or "https" (URL).

    ``uri`` names the destination in the deliveries table: ``mailto:<address>`` (one per
    address of a multi-address mailto URI) or the https URL as published. ``host`` is the
    checked https host or mail domain (lowercase), ``port`` the https port.
    """

    uri: str
    method: str
    target: str
    host: str = ""
    port: int = HTTPS_PORT


@dataclass(frozen=True, slots=True)
class TlsrptRecord:
    destinations: tuple[Destination, ...]
    unsupported: tuple[str, ...] = ()
    extensions: tuple[tuple[str, str], ...] = ()
    dropped: tuple[str, ...] = ()  # usable, but over MAX_DESTINATIONS or MAX_PER_HOST


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
    dropped: list[str] = []
    per_host: dict[str, int] = {}
    for uri in dict.fromkeys(uris):
        found = _destinations(uri)
        if not found:
            unsupported.append(uri)
        for dest in found:
            if dest.uri in (d.uri for d in destinations):
                continue
            if len(destinations) >= MAX_DESTINATIONS or per_host.get(dest.host, 0) >= MAX_PER_HOST:
                dropped.append(dest.uri)
                continue
            per_host[dest.host] = per_host.get(dest.host, 0) + 1
            destinations.append(dest)
    return TlsrptRecord(tuple(destinations), tuple(unsupported), tuple(extensions), tuple(dropped))


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
        dest = _https(rest)
        return [dest] if dest is not None else []
    if scheme == "mailto":
        decoded = _PERCENT_RE.sub(lambda m: chr(int(m.group(1), 16)), rest.split("?", 1)[0])
        addresses = [a.strip() for a in decoded.split(",") if a.strip()]
        if not addresses or not all(mailbox(a) for a in addresses):
            return []
        return [
            Destination(f"mailto:{a}", "mailto", a, host=a.rpartition("@")[2].lower())
            for a in addresses
        ]
    return []


def _https(rest: str) -> Destination | None:
    """The destination of ``https:<rest>``, or None (no host name, userinfo, bad port)."""
    if not rest.startswith("//"):
        return None
    authority, tail = _split_authority(rest[2:])
    if "@" in authority or "%" in authority or authority.startswith("["):
        return None
    host, colon, port_text = authority.partition(":")
    host = host.lower()
    if not host_name(host):
        return None
    port = HTTPS_PORT
    if colon:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        port = int(port_text)
    target = f"https://{host}{'' if port == HTTPS_PORT else f':{port}'}{tail or '/'}"
    return Destination("https:" + rest, "https", target, host=host, port=port)


def _split_authority(text: str) -> tuple[str, str]:
    """(authority, path and query) of the part after ``//``; a fragment is dropped."""
    text = text.split("#", 1)[0]
    for index, char in enumerate(text):
        if char in "/?":
            return text[:index], ("/" + text[index:]) if char == "?" else text[index:]
    return text, ""
