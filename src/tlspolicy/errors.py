"""The exception tree.

Exceptions are kept for misuse, peer framing errors and adapter failures; lookups
otherwise return values. Each class says what the caller should do about it.

    TlsPolicyError
    ├── ConfigError            bad configuration: report the message, do not start
    ├── ProtocolError          the socketmap peer broke the framing: close that connection
    ├── DnsError               a DNS query failed (SERVFAIL, timeout, ...): a temporary failure
    ├── FetchError             an MTA-STS policy fetch failed: treat as "no fresh policy"
    ├── RecordSyntaxError      an _mta-sts TXT record is broken: treat as "no record"
    ├── PolicySyntaxError      a fetched policy is invalid: treat as a failed fetch
    ├── CacheError             a cache backend failed: answer without it, log once
    ├── DatagramError          a TLSRPT datagram from Postfix is unusable: count it, drop it
    ├── ReportStoreError       the TLSRPT store failed: keep the batch, retry later
    ├── DeliveryError          sending one TLSRPT report to one rua failed: retry with backoff
    └── InboundReportError     a received TLSRPT report is refused: answer or log the reason
"""

from __future__ import annotations


class TlsPolicyError(Exception):
    """Root of all errors raised by tlspolicy."""


class ConfigError(TlsPolicyError):
    """The configuration is invalid; the message names the key and the problem."""


class ProtocolError(TlsPolicyError):
    """The socketmap client sent something that is not valid framing; close the connection."""


class DnsError(TlsPolicyError):
    """A DNS lookup failed in a way that says nothing about the data (temporary).

    ``kind`` is one of: ``servfail`` (includes DNSSEC bogus), ``timeout``, ``refused``,
    ``malformed``, ``network``, ``other``.
    """

    def __init__(self, kind: str, detail: str, *, name: str = "", rdtype: str = "") -> None:
        super().__init__(f"{rdtype} {name}: {kind}: {detail}".strip())
        self.kind = kind
        self.detail = detail
        self.name = name
        self.rdtype = rdtype


class FetchError(TlsPolicyError):
    """Fetching an MTA-STS policy failed; ``kind`` is a short fixed token for metrics/logs.

    Kinds: ``dns``, ``private-address``, ``connect``, ``tls``, ``certificate``, ``timeout``,
    ``status``, ``redirect``, ``content-type``, ``too-large``, ``encoding``, ``proxy``, ``other``.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class RecordSyntaxError(TlsPolicyError):
    """An ``_mta-sts`` TXT record starts like an STS record but breaks the grammar."""


class PolicySyntaxError(TlsPolicyError):
    """A fetched MTA-STS policy breaks the RFC 8461 §3.2 grammar.

    ``line`` is the 1-based line number (0 when the problem concerns the whole policy).
    """

    def __init__(self, line: int, why: str) -> None:
        super().__init__(f"line {line}: {why}" if line else why)
        self.line = line
        self.why = why


class CacheError(TlsPolicyError):
    """A cache backend could not serve the request; carry on without it."""


class DatagramError(TlsPolicyError):
    """A libtlsrpt datagram is not valid JSON, too large, or has the wrong shape; drop it."""


class ReportStoreError(TlsPolicyError):
    """The TLSRPT counts store (SQLite or PostgreSQL) failed; keep the data and retry."""


class DeliveryError(TlsPolicyError):
    """One report could not be delivered to one destination; ``kind`` is a fixed token.

    Kinds: ``smtp``, ``http-status``, ``connect``, ``tls``, ``timeout``, ``other``.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class InboundReportError(TlsPolicyError):
    """A TLSRPT report someone sent us is refused (too large, not JSON, not RFC 8460 §4).

    ``verdict`` is the fixed token for metrics and the store (``tlsrpt.inbound.Verdict``);
    ``reason`` says what is wrong, for the log and the HTTP answer.
    """

    def __init__(self, verdict: str, reason: str) -> None:
        super().__init__(f"{verdict}: {reason}")
        self.verdict = verdict
        self.reason = reason
