"""Recipient domains from Postfix logs, for ``tlspolicy cache warm --from-maillog``. Pure.

Only delivery lines of the SMTP client count (``postfix/smtp[pid]:``, any
``multi_instance_name``, syslog or journal prefix), with ``status=sent`` or
``status=deferred``: those are the domains this MTA really sends to, including the ones it
is retrying. Bounces, local/virtual/lmtp deliveries and IP-literal recipients are skipped.
The most recently seen domains come first, so a ``limit`` keeps the recent traffic.
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Iterable, Iterator
from typing import IO, BinaryIO, cast

_SMTP = re.compile(r"postfix[^/\s]*/smtp\[\d+\]:")
_TO = re.compile(r"\bto=<([^>]*)>")
_STATUS = re.compile(r"\bstatus=(sent|deferred)\b")
_RELAY = re.compile(r"\brelay=")
GZIP_MAGIC = b"\x1f\x8b"


def recipient_domain(line: str) -> str | None:
    """The recipient domain of one sent/deferred SMTP delivery line, or None."""
    if not _SMTP.search(line) or not _STATUS.search(line) or not _RELAY.search(line):
        return None
    found = _TO.search(line)
    if found is None or "@" not in found.group(1):
        return None
    domain = found.group(1).rsplit("@", 1)[1].strip().lower().rstrip(".")
    if not domain or domain.startswith("[") or any(c.isspace() for c in domain):
        return None
    return domain


def recent_domains(lines: Iterable[str], limit: int | None = None) -> list[str]:
    """Distinct recipient domains, the most recently seen first."""
    last_seen: dict[str, int] = {}
    for number, line in enumerate(lines):
        domain = recipient_domain(line)
        if domain is not None:
            last_seen[domain] = number
    ordered = sorted(last_seen, key=lambda d: -last_seen[d])
    return ordered if limit is None else ordered[:limit]


def read_lines(stream: BinaryIO) -> Iterator[str]:
    """Text lines of a plain or gzip-compressed log (recognised by content, not name).

    ``stream`` must support ``peek`` (files opened ``"rb"``, ``sys.stdin.buffer``)."""
    peek = getattr(stream, "peek", None)
    head = peek(2)[:2] if peek is not None else b""
    raw: IO[bytes] = (
        cast(IO[bytes], gzip.GzipFile(fileobj=stream)) if head == GZIP_MAGIC else stream
    )
    for line in io.TextIOWrapper(raw, encoding="utf-8", errors="replace"):
        yield line.rstrip("\n")
