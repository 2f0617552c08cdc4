"""What instrumented code records metrics through: the ``MetricsSink`` interface and a
do-nothing ``NullMetrics``, without prometheus-client.

Code that records metrics takes a ``MetricsSink`` (default ``NULL_METRICS``) and never
touches prometheus-client itself (sinks are passed in, never imported by the code that
records, so tests need no patching); ``metrics.Metrics`` is the
prometheus-client implementation. Importing this module costs nothing, so a command that
records no metrics (``tlspolicy query``, ``check``) never imports prometheus-client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

# The fixed label values (a value outside its set is counted as ``OTHER``).
OTHER = "other"  # the bucket for any label value outside its fixed set

ANSWERS = ("dane-only", "dane", "secure", "notfound", "temp", "perm", "may", "encrypt", "none")
CACHE_LAYERS = ("hot", "backend")
REFRESH_OUTCOMES = ("success", "failure", "skipped")
DOWNGRADE_KINDS = ("dane", "mta_sts")
LOOKUP_BRANCHES = ("dane", "mta_sts")
TLSRPT_DATAGRAM_OUTCOMES = ("received", "invalid", "dropped")
TLSRPT_POLICY_TYPES = ("tlsa", "sts", "no-policy-found")
TLSRPT_SESSION_RESULTS = ("successful", "failed")
TLSRPT_REPORT_METHODS = ("mailto", "https")
TLSRPT_REPORT_OUTCOMES = ("sent", "failed")
# Reports others send us (tlsrpt/inbound.py Transport, Verdict; RFC 8460 §4.3 result types).
TLSRPT_INBOUND_TRANSPORTS = ("mail", "https", "file")
TLSRPT_INBOUND_VERDICTS = (
    "accepted", "duplicate", "invalid", "unsigned", "too-large", "wrong-type",
    "rate-limited", "not-report",
)  # fmt: skip
TLSRPT_RESULT_TYPES = (
    "starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
    "certificate-not-trusted", "validation-failure", "tlsa-invalid", "dnssec-invalid",
    "dane-required", "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid",
)  # fmt: skip
# Policy-domain label values: the operator's tlsrpt.inbound_domains, at most this many.
MAX_INBOUND_DOMAIN_LABELS = 64
# At server.max_connections: an idle connection closed for a newcomer, or the newcomer refused.
CONNECTION_LIMIT_ACTIONS = ("evicted", "refused")

# Outcome tokens per lookup kind: DNS failure kinds are DnsError.kind (errors.py) plus the
# answers that are not failures; HTTPS failure kinds are FetchError.kind (errors.py).
LOOKUP_OUTCOMES: dict[str, tuple[str, ...]] = {
    "dns": (
        "ok",
        "nxdomain",
        "servfail",
        "timeout",
        "refused",
        "malformed",
        "network",
        "bogus",
        OTHER,
    ),
    "https": (
        "ok",
        "dns",
        "private-address",
        "connect",
        "tls",
        "certificate",
        "timeout",
        "status",
        "redirect",
        "content-type",
        "too-large",
        "encoding",
        "proxy",
        OTHER,
    ),
    "policy": ("ok", "invalid", OTHER),
}

# At most this many distinct map label values; later names count as "other". The config
# normally has two maps (README "Configuration reference"); the cap only bounds cardinality
# if a caller passes names straight from requests.
MAX_MAP_LABELS = 32


class MetricsSink(Protocol):
    """What instrumented code calls; ``Metrics`` records, ``NullMetrics`` ignores."""

    def query(self, map_name: str, answer: str) -> None: ...
    def cache(self, layer: str, hit: bool) -> None: ...
    def lookup(self, kind: str, outcome: str) -> None: ...
    def lookup_seconds(self, branch: str, seconds: float) -> None: ...
    def refresh(self, outcome: str) -> None: ...
    def downgrade(self, kind: str) -> None: ...
    def set_connections(self, n: int) -> None: ...
    def connection_limit(self, action: str) -> None: ...
    def set_cache_entries_source(self, fn: Callable[[], float]) -> None: ...
    def set_resolver_validating(self, ok: bool) -> None: ...
    def set_cache_backend_up(self, ok: bool) -> None: ...
    def override(self, state: str) -> None: ...
    def shadow(self, answer: str) -> None: ...
    def drift(self, kind: str) -> None: ...


class NullMetrics:
    """A ``MetricsSink`` that records nothing (tests, ``tlspolicy query``)."""

    def query(self, map_name: str, answer: str) -> None:
        return None

    def cache(self, layer: str, hit: bool) -> None:
        return None

    def lookup(self, kind: str, outcome: str) -> None:
        return None

    def lookup_seconds(self, branch: str, seconds: float) -> None:
        return None

    def refresh(self, outcome: str) -> None:
        return None

    def downgrade(self, kind: str) -> None:
        return None

    def set_connections(self, n: int) -> None:
        return None

    def connection_limit(self, action: str) -> None:
        return None

    def set_cache_entries_source(self, fn: Callable[[], float]) -> None:
        return None

    def set_resolver_validating(self, ok: bool) -> None:
        return None

    def set_cache_backend_up(self, ok: bool) -> None:
        return None

    def override(self, state: str) -> None:
        return None

    def shadow(self, answer: str) -> None:
        return None

    def drift(self, kind: str) -> None:
        return None

    def tlsrpt_datagrams(self, outcome: str, n: int = 1) -> None:
        return None

    def tlsrpt_session(self, policy_type: str, result: str) -> None:
        return None

    def tlsrpt_report(self, method: str, outcome: str) -> None:
        return None

    def tlsrpt_late(self, n: int) -> None:
        return None

    def tlsrpt_inbound_report(self, transport: str, verdict: str) -> None:
        return None

    def tlsrpt_inbound_sessions(self, domain: str, result: str, n: int) -> None:
        return None

    def tlsrpt_inbound_failures(self, domain: str, result_type: str, n: int) -> None:
        return None


NULL_METRICS = NullMetrics()


class TlsrptMetricsSink(Protocol):
    def tlsrpt_datagrams(self, outcome: str, n: int = 1) -> None: ...
    def tlsrpt_session(self, policy_type: str, result: str) -> None: ...
    def tlsrpt_report(self, method: str, outcome: str) -> None: ...
    def tlsrpt_late(self, n: int) -> None: ...
    def tlsrpt_inbound_report(self, transport: str, verdict: str) -> None: ...
    def tlsrpt_inbound_sessions(self, domain: str, result: str, n: int) -> None: ...
    def tlsrpt_inbound_failures(self, domain: str, result_type: str, n: int) -> None: ...


# NullMetrics records nothing of every kind, TLSRPT included.
NULL_TLSRPT_METRICS: TlsrptMetricsSink = NULL_METRICS
