"""The MTA-STS policy file (RFC 8461 §3.2): strict parsing, and MX pattern matching (§4.1).

Pure: text in, ``Policy`` out, ``PolicySyntaxError(line, why)`` otherwise. Rules kept here:

* Every line must match the grammar; one bad line invalidates the whole policy, which the
  caller then treats as a failed fetch (RFC 8461 §3.2, §3.3).
* For every field except ``mx`` the first occurrence wins; later duplicates are ignored
  without judging their value (RFC 8461 §3.2: "all entries except for the first SHALL be
  ignored"): ``mode: enforce`` then ``mode: bogus`` is an enforce policy. Such a line still
  needs the generic line grammar, which any extension field meets; refusing the policy
  for a value the RFC says to ignore would drop it, failing open (§5.1).
* ``max_age`` above 31557600 is clamped to 31557600, with a note (``Policy.notes``). The
  RFC states that maximum in prose while its ABNF allows ten digits (erratum 7282);
  refusing the policy would fail open, and a policy cached a bit less long than its
  publisher asked is merely re-fetched sooner.
* At most ``MAX_MX_PATTERNS`` distinct ``mx`` patterns are kept, the first ones in file
  order; the others are still checked against the grammar, then dropped with a note. A
  real policy has a handful, and each query matches its MX hosts against all of them.
  Keeping the first ones keeps the policy in force: an MX host that only a dropped
  pattern would cover is refused in ``enforce`` mode (its mail is deferred, and the drift
  warning names it), where refusing the whole policy would deliver to every host without
  TLS checks (§5.1), failing open.
* ``mx`` patterns are RFC 5321 Domains in A-label form, optionally prefixed by ``*.``;
  IP addresses are refused (an IP literal as an ``mx`` pattern is what Postfix must never be
  handed as a ``match=`` name: docs/protocol-notes.md §7.4).

The caller logs ``Policy.notes`` once, when the policy is fetched: a cached policy is
restored from its parsed fields (``from_fields``), without notes and without parsing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from tlspolicy.errors import PolicySyntaxError
from tlspolicy.names import MAX_HOST_CHARS

# RFC 8461 §3.2 (RFC 7405 ABNF; the RFC prints sts-policy-term where sts-policy-mx is meant
# in the field list, see docs/protocol-notes.md §4.3):
#
#   sts-policy-record        = sts-policy-field *WSP
#                              *(sts-policy-term sts-policy-field *WSP)
#                              [sts-policy-term]
#   sts-policy-field         = sts-policy-version /      ; required once
#                              sts-policy-mode    /      ; required once
#                              sts-policy-max-age /      ; required once
#                              sts-policy-mx /           ; required at least once, except
#                                                        ; when mode is "none"
#                              sts-policy-extension      ; other fields
#   sts-policy-field-delim   = ":" *WSP
#   sts-policy-version-value = %s"STSv1"
#   sts-policy-mode-value    = %s"testing" / %s"enforce" / %s"none"
#   sts-policy-mx-value      = ["*."] Domain             ; Domain from RFC 5321 §4.1.2
#   sts-policy-max-age-value = 1*10(DIGIT)
#   sts-policy-ext-name      = (sts-policy-alphanum) *31(sts-policy-alphanum / "_" / "-" / ".")
#   sts-policy-term          = LF / CRLF                 ; erratum 6253: LF or CRLF
#   sts-policy-ext-value     = sts-policy-vchar [*(%x20 / sts-policy-vchar) sts-policy-vchar]
#                              ; chars, including UTF-8, excluding CTLs and no
#                              ; leading/trailing spaces
#   sts-policy-alphanum      = ALPHA / DIGIT
#   sts-policy-vchar         = %x21-7E / UTF8-2 / UTF8-3 / UTF8-4
#
# RFC 5321 §4.1.2:
#   Domain     = sub-domain *("." sub-domain)
#   sub-domain = Let-dig [Ldh-str]
#   Ldh-str    = *( ALPHA / DIGIT / "-" ) Let-dig
#
# Choices where the RFC leaves room (documented, tested):
# * Blank lines: the grammar has none, and in an RFC 5322-like format a blank line ends the
#   header, so a blank line *between* fields is an error (postfix-tlspol rejects any blank
#   line, docs/protocol-notes.md §7.3). Blank lines at the very end of the file are
#   tolerated: web servers and editors add them, and nothing follows them that could be
#   misread.
# * Known field names are case-sensitive (%s"mode"): ``Mode: enforce`` is an extension field,
#   and the policy then lacks ``mode``.
# * A known field with a value outside its grammar (``mode: strict``) is an error, not an
#   extension field that happens to share the name.
# * U-labels in ``mx`` are refused, not converted: RFC 8461 §3.2 says the value MUST be the
#   A-label, and Domain is ASCII-only. A policy that breaks a MUST is not guessed at.
# * A trailing dot (``mx: mail.example.com.``) is not in the Domain grammar and is refused.
# * ``max_age`` above 31557600 is clamped (see the module docstring): erratum 7282 notes
#   that 10 digits allow more than the maximum the prose states.
# * Repeated ``version``, ``mode`` and ``max_age`` lines after the first are not judged.
MAX_AGE_LIMIT_S = 31_557_600  # RFC 8461 §3.2: max_age maximum value
# Distinct mx patterns kept (see the module docstring): a real policy has a handful.
MAX_MX_PATTERNS = 100
MAX_LABEL_CHARS = 63  # RFC 1035 §2.3.4
MAX_EXT_NAME_CHARS = 32  # RFC 8461 §3.2: alphanum *31(...)

_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?")
_DIGITS_RE = re.compile(r"[0-9]{1,10}")
_SHARED = {
    w: w for w in ("version", "mode", "max_age", "mx", "STSv1", "enforce", "testing", "none")
}
_WSP = " \t"


class Mode(StrEnum):
    """``mode`` values (RFC 8461 §5)."""

    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


_MODES = frozenset(mode.value for mode in Mode)


@dataclass(frozen=True, slots=True)
class Policy:
    """A valid MTA-STS policy.

    Attributes:
        mode: the policy mode.
        max_age: seconds the policy may be cached from fetch time (0..31557600).
        mx: the ``mx`` patterns, lowercased A-labels, ``*.`` kept, in file order, duplicates
            removed, at most ``MAX_MX_PATTERNS``.
        text: the policy text as fetched (what a cache stores, with the fields above).
        notes: what parsing changed in the published policy (a clamped ``max_age``,
            dropped ``mx`` patterns), one line each for the caller to log; empty for a
            policy restored from a cache. Not part of the policy's value.
        fields: every line as (key, value) in served order, duplicates included (for the
            TLSRPT ``policy_string``); read again from ``text`` when asked, not held: only
            a reply for a TLSRPT map uses them, and every cached policy would carry them.
    """

    mode: Mode
    max_age: int
    mx: tuple[str, ...]
    text: str
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        return tuple(_fields(_policy_lines(self.text)))

    def matches(self, host: str) -> bool:
        """True when MX host name ``host`` matches one of the ``mx`` patterns."""
        return any(mx_matches(pattern, host) for pattern in self.mx)


def parse_policy(text: str | bytes) -> Policy:
    """Parse a policy body.

    Args:
        text: the body as text, or as bytes (which must be UTF-8).

    Returns:
        the policy.

    Raises:
        PolicySyntaxError: ``line`` is the 1-based line at fault, 0 for whole-policy
            problems (encoding, a missing field).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicySyntaxError(0, f"policy is not UTF-8 (byte {exc.start})") from None
    else:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PolicySyntaxError(0, f"policy is not UTF-8 (character {exc.start})") from None
    lines = _policy_lines(text)
    if not lines:
        raise PolicySyntaxError(0, "policy is empty")
    version: str | None = None
    mode: Mode | None = None
    max_age: int | None = None
    published_max_age = 0
    mx: dict[str, None] = {}  # an ordered set: patterns kept
    dropped: set[str] = set()  # distinct patterns beyond MAX_MX_PATTERNS
    for number, (key, value) in enumerate(_fields(lines), start=1):
        if key == "version":
            if version is None:
                if value != "STSv1":
                    raise PolicySyntaxError(number, f"version must be STSv1, not {value!r}")
                version = value
        elif key == "mode":
            if mode is None:
                if value not in _MODES:
                    raise PolicySyntaxError(
                        number, f"mode must be enforce, testing or none, not {value!r}"
                    )
                mode = Mode(value)
        elif key == "max_age":
            if max_age is None:
                published_max_age = _parse_max_age(number, value)
                max_age = min(published_max_age, MAX_AGE_LIMIT_S)
        elif key == "mx":
            why = mx_pattern_problem(value)
            if why is not None:
                raise PolicySyntaxError(number, f"bad mx pattern {value!r}: {why}")
            pattern = value.lower()
            if pattern in mx:
                continue
            if len(mx) < MAX_MX_PATTERNS:
                mx[pattern] = None
            else:
                dropped.add(pattern)
    if version is None:
        raise PolicySyntaxError(0, "missing version field")
    if mode is None:
        raise PolicySyntaxError(0, "missing mode field")
    if max_age is None:
        raise PolicySyntaxError(0, "missing max_age field")
    if not mx and mode is not Mode.NONE:
        raise PolicySyntaxError(0, f"no mx field (required in mode {mode.value})")
    notes: list[str] = []
    if published_max_age > MAX_AGE_LIMIT_S:
        notes.append(
            f"max_age {published_max_age} clamped to {MAX_AGE_LIMIT_S} (RFC 8461 §3.2 maximum)"
        )
    if dropped:
        notes.append(
            f"{len(dropped)} mx patterns beyond the first {MAX_MX_PATTERNS} ignored: "
            "MX hosts only they match are refused in enforce mode"
        )
    return Policy(mode=mode, max_age=max_age, mx=tuple(mx), text=text, notes=tuple(notes))


def from_fields(mode: str, max_age: object, mx: Sequence[object], text: str) -> Policy:
    """A policy that ``parse_policy`` returned before, rebuilt from its fields (a cache).

    Cheap checks only, to refuse data that is not such a policy; ``text`` is not parsed
    again (that is what made a cache decode cost a parse).

    Raises:
        ValueError: the fields cannot be those of a parsed policy.
    """
    if mode not in _MODES:
        raise ValueError(f"mode: {mode!r} is not a policy mode")
    if isinstance(max_age, bool) or not isinstance(max_age, int):
        raise ValueError("max_age: must be an integer")
    if not 0 <= max_age <= MAX_AGE_LIMIT_S:
        raise ValueError(f"max_age: {max_age} out of range")
    patterns = tuple(p for p in mx if isinstance(p, str) and p)
    if len(patterns) != len(mx) or len(patterns) > MAX_MX_PATTERNS:
        raise ValueError(f"mx: must be at most {MAX_MX_PATTERNS} non-empty strings")
    if not patterns and mode != Mode.NONE:
        raise ValueError(f"mx: required in mode {mode}")
    return Policy(mode=Mode(mode), max_age=max_age, mx=patterns, text=text)


def _policy_lines(text: str) -> list[str]:
    """The policy's lines, without the final terminator and trailing blank lines."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final line terminator
    while lines and lines[-1].strip(_WSP) in ("", "\r"):
        lines.pop()  # blank lines at the end are tolerated (see above)
    return lines


def _fields(lines: list[str]) -> Iterator[tuple[str, str]]:
    """(key, value) per line; raises ``PolicySyntaxError`` at the first bad line."""
    for number, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        key, value = _split_line(number, line)
        # Field names and the version and mode values repeat in every cached policy: one
        # shared copy each (a fixed vocabulary, so a hostile policy cannot grow it).
        key = _SHARED.get(key, key)
        yield key, _SHARED.get(value, value) if key in ("version", "mode") else value


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 §4.1: does MX host name ``host`` match ``pattern``?

    Case-insensitive; one trailing dot on ``host`` is ignored. ``*.example.com`` matches
    exactly one extra leftmost label: ``mail.example.com``, not ``example.com`` nor
    ``a.b.example.com``. Compare A-labels.
    """
    pattern = pattern.lower()
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or not pattern:
        return False
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and first != "*" and rest == pattern[2:]
    return host == pattern


def mx_pattern_problem(value: str) -> str | None:
    """Why ``value`` is not a valid ``mx`` pattern (``["*."] Domain``), or None if it is."""
    domain = value[2:] if value.startswith("*.") else value
    if domain.startswith("["):
        return "IP address literals are not allowed"
    if ":" in domain:
        try:
            ipaddress.IPv6Address(domain)
        except ValueError:
            return "':' is not allowed (no ports in mx patterns)"
        return "IP addresses are not allowed"
    return domain_problem(domain)


def domain_problem(name: str) -> str | None:
    """Why ``name`` is not an RFC 5321 Domain in A-label form usable as a host name, or None.

    Beyond the LDH grammar this refuses all-numeric top labels, so that dotted-quad IPv4
    addresses (which the grammar admits) are never taken for names (RFC 3696 §2).
    """
    if not name:
        return "empty name"
    if not name.isascii():
        return "not ASCII (IDNs must be written as A-labels, RFC 8461 §3.2)"
    if len(name) > MAX_HOST_CHARS:
        return f"name longer than {MAX_HOST_CHARS} characters"
    if name.endswith("."):
        return "trailing dot"
    labels = name.lower().split(".")
    for label in labels:
        if not label:
            return "empty label"
        if len(label) > MAX_LABEL_CHARS:
            return f"label longer than {MAX_LABEL_CHARS} characters"
        if "*" in label:
            return "a wildcard is only allowed as the whole leftmost label ('*.')"
        if _LABEL_RE.fullmatch(label) is None:
            return f"label {label!r} is not letters, digits and inner hyphens"
    if labels[-1].isdigit():
        return "IP addresses are not allowed (all-numeric top label)"
    return None


def _split_line(number: int, line: str) -> tuple[str, str]:
    """Split one line into (key, value), checking the key and the generic value grammar."""
    key, colon, rest = line.partition(":")
    if not colon:
        if not line.strip(_WSP):
            raise PolicySyntaxError(number, "blank line")
        raise PolicySyntaxError(number, f"no ':' in {_show(line)}")
    if key and key.rstrip(_WSP) != key:
        raise PolicySyntaxError(number, "whitespace before ':'")
    if _KEY_RE.fullmatch(key) is None:
        if len(key) > MAX_EXT_NAME_CHARS and _KEY_RE.fullmatch(key[:MAX_EXT_NAME_CHARS]):
            raise PolicySyntaxError(number, f"field name longer than {MAX_EXT_NAME_CHARS}")
        raise PolicySyntaxError(number, f"bad field name {_show(key)}")
    value = rest.lstrip(_WSP).rstrip(_WSP)
    if not value:
        raise PolicySyntaxError(number, f"field {key!r} has no value")
    for char in value:
        code = ord(char)
        if code < 0x20 or code == 0x7F:  # CTLs, including HTAB inside a value
            raise PolicySyntaxError(number, f"control character {char!r} in {key!r}")
    return key, value


def _parse_max_age(number: int, value: str) -> int:
    """The published value, unclamped (``parse_policy`` clamps it and says so)."""
    if _DIGITS_RE.fullmatch(value) is None:
        raise PolicySyntaxError(number, f"max_age must be 1 to 10 digits, not {value!r}")
    return int(value)


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")
