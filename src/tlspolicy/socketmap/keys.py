"""Turn a socketmap lookup key into the policy domain, or say why there is none.

The key is Postfix's next-hop (docs/protocol-notes.md §1.1): a recipient domain, or a verbatim
transport/relayhost next-hop such as ``[relay.example]:587``. RFC 8461 §3.4 makes the
relay's domain the policy domain for smart hosts, so brackets and ports are dropped.
Keys that start with ``.`` are Postfix's parent-domain probes (``tls_policy_lookup``);
RFC 8461 §3.4 forbids parent policies, so they get no policy. Address literals have no
policy (RFC 8461 §3.4, RFC 7672 §2.2). Nothing here looks anything up.

A key that cannot name any domain (a label over 63 octets, a name over 253, bytes that are
not a host name) is a property of the key, not of the framing: it gets "no policy"
(``NOTFOUND ``) and the connection stays open. Closing would make Postfix defer the message
and retry for days; Postfix itself answers "not found" for keys it cannot look up
(``dict_utf8_lookup`` for malformed UTF-8, ``dns_lookup_x`` for invalid host names).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import idna

from tlspolicy.names import MAX_HOST_CHARS, MAX_LABEL_OCTETS

_LDH = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


@dataclass(frozen=True, slots=True)
class KeyResult:
    domain: str | None  # lowercase A-label domain, or None: answer NOTFOUND without lookup
    why: str = ""  # when domain is None: why there is no policy


def _is_ip(text: str) -> bool:
    text = text.removeprefix("ipv6:").split("%", 1)[0]
    if ":" not in text and not text.replace(".", "").isdigit():
        return False  # a host name (nearly every key): no exception raised and caught
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def normalize_key(key: str) -> KeyResult:
    """Map a next-hop key to a policy domain; never raises (see the module docstring)."""
    text = key.strip().lower()
    if not text:
        return KeyResult(None, "empty key")
    if text.startswith("."):
        return KeyResult(None, "parent-domain key (RFC 8461 §3.4: no parent policies)")
    if _is_ip(text):
        return KeyResult(None, "IP address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not _is_port(rest)):
            return KeyResult(None, "malformed bracketed next-hop")
        text = host
        if _is_ip(text):
            return KeyResult(None, "address literal")
    elif ":" in text:
        host, _, port = text.rpartition(":")
        if not _is_port(":" + port):
            return KeyResult(None, "malformed next-hop")
        text = host
    text = text.removesuffix(".")
    if not text or text.startswith("."):
        return KeyResult(None, "invalid domain name")
    if _is_ip(text):
        return KeyResult(None, "address literal")
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            return KeyResult(None, "invalid internationalized domain name")
    found = _check_name(text)
    if found.domain == key:
        # The key as sent is the domain (what Postfix sends): one string, not two, for
        # the memo and cache entries that hold both.
        return KeyResult(key)
    return found


def _is_port(text: str) -> bool:
    # ":25", ":smtp", ":submission": a port number or a service name.
    port = text[1:]
    return text.startswith(":") and bool(port) and (port.isdigit() or port.isalnum())


def _check_name(name: str) -> KeyResult:
    labels = name.split(".")
    if any(len(label.encode()) > MAX_LABEL_OCTETS for label in labels):
        return KeyResult(None, f"label longer than {MAX_LABEL_OCTETS} octets")
    if len(name) > MAX_HOST_CHARS:
        return KeyResult(None, "domain name too long")
    if len(labels) < 2:
        return KeyResult(None, "single-label name")
    for label in labels:
        if not label or not set(label) <= _LDH or label[0] == "-" or label[-1] == "-":
            return KeyResult(None, "invalid domain name")
    if labels[-1].isdigit():
        return KeyResult(None, "numeric top-level label")
    return KeyResult(name)
