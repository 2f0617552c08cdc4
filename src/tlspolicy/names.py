"""Host names and mail addresses that come from outside: the one place their rules live.

A name or address from a DNS record, a policy or a report chooses where we connect or
whom we mail, so it is judged here, strictly, before anything uses it.

* ``host_name``: LDH labels (RFC 1123 §2.1) of 1..63 octets, two labels or more, at most
  253 characters (RFC 1035 §3.1: 255 octets on the wire), a last label that starts with a
  letter (so no IP address in any notation: ``127.0.0.1``, ``0x7f000001``,
  ``2130706433``), and A-labels that IDNA decodes.
* ``mailbox``: an RFC 5321 Mailbox of the plain kind, ``dot-atom@host-name``: a local part
  of RFC 5322 atext (no specials, controls, spaces or non-ASCII; at most 64 octets), no
  comments, groups, quoted strings or address literals. So the address that is checked is
  the address that is used: no parser can read ``root(@evil.example`` as ``root``.
"""

from __future__ import annotations

import re

import idna

MAX_HOST_CHARS = 253  # RFC 1035 §3.1: 255 octets on the wire
MAX_LABEL_OCTETS = 63  # RFC 1035 §2.3.4
MAX_LOCAL_PART_OCTETS = 64  # RFC 5321 §4.5.3.1.1
# RFC 5322 §3.2.3 dot-atom of atext: what an RFC 5321 Local-part is without quoting
_DOT_ATOM_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LDH_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def host_name(text: str) -> bool:
    """A host name we may look up and connect to (see the module doc): LDH labels, two or
    more, at most 253 characters, a last label that starts with a letter (no IP address in
    any notation), A-labels that IDNA accepts."""
    if not 0 < len(text) <= MAX_HOST_CHARS:
        return False
    labels = text.lower().split(".")
    if len(labels) < 2 or not labels[-1][:1].isalpha():
        return False
    for label in labels:
        if not _LDH_LABEL_RE.fullmatch(label):
            return False
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError):
                return False
    return True


def mailbox(address: str) -> bool:
    """An RFC 5321 Mailbox of the plain kind: ``dot-atom@host-name`` (see the module doc)."""
    local, at, domain = address.rpartition("@")
    return (
        bool(at)
        and len(local.encode()) <= MAX_LOCAL_PART_OCTETS
        and _DOT_ATOM_RE.fullmatch(local) is not None
        and host_name(domain)
    )
