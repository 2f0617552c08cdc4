"""Prometheus metrics, behind a small recording interface with a do-nothing default.

What this module owns:
* ``Metrics``: the prometheus-client implementation of ``metricsink.MetricsSink`` (which
  also holds ``NullMetrics``), on its own ``CollectorRegistry`` (never
  the process-global one, so tests and several instances do not collide).

Rules it keeps:
* Label values come from fixed sets only, never from a domain name: anything outside a set
  is counted under ``other`` instead of raising (a metrics typo must not fail a query), and
  map names are capped at ``MAX_MAP_LABELS`` distinct values.
* The hot path (``query``, ``cache``) is a dict lookup plus an increment: label children are
  bound once, up front or on first use, and kept in dicts.
* No ``_created`` series: they doubled the exposition for a timestamp nobody graphs
  (``disable_created_metrics`` is process-wide, set once at import). The standard
  ``process_*`` and ``python_*`` collectors are registered, as operators expect of an
  exporter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from tlspolicy import __version__
from tlspolicy.metrics.sink import (
    ANSWERS,
    CACHE_LAYERS,
    CONNECTION_LIMIT_ACTIONS,
    DOWNGRADE_KINDS,
    LOOKUP_BRANCHES,
    LOOKUP_OUTCOMES,
    MAX_INBOUND_DOMAIN_LABELS,
    MAX_MAP_LABELS,
    OTHER,
    REFRESH_OUTCOMES,
    TLSRPT_DATAGRAM_OUTCOMES,
    TLSRPT_INBOUND_TRANSPORTS,
    TLSRPT_INBOUND_VERDICTS,
    TLSRPT_POLICY_TYPES,
    TLSRPT_REPORT_METHODS,
    TLSRPT_REPORT_OUTCOMES,
    TLSRPT_RESULT_TYPES,
    TLSRPT_SESSION_RESULTS,
)

disable_created_metrics()  # type: ignore[no-untyped-call]

# Lookup latency buckets in seconds: 1 ms (answered from a warm local resolver) up to 30 s
# (past server.request_timeout's 20 s default, config.py ServerConfig).
LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
)


OVERRIDE_STATES = ("active", "expired")

DRIFT_KINDS = ("mta_sts", "dane")


class Metrics:
    """Every tlspolicy metric, registered on ``self.registry``.

    Args:
        map_names: socketmap names to pre-bind (from the config), so their series exist
            at zero before the first query; other names are bound on first use.
    """

    def __init__(self, *, map_names: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self._queries = Counter(
            "tlspolicy_queries_total",
            "Socketmap queries answered, by map name and answer",
            ["map", "answer"],
            registry=r,
        )
        self._cache = Counter(
            "tlspolicy_cache_requests_total",
            "Cache look-ups by layer (hot: in-process, backend: the configured store)",
            ["layer", "result"],
            registry=r,
        )
        self._lookups = Counter(
            "tlspolicy_lookups_total",
            "DNS queries, HTTPS policy fetches and policy parses, by outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self._latency = Histogram(
            "tlspolicy_lookup_duration_seconds",
            "Time to decide one branch (DANE or MTA-STS) for one domain, uncached",
            ["branch"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self._refresh = Counter(
            "tlspolicy_refresh_total",
            "Refresh-ahead attempts by outcome",
            ["outcome"],
            registry=r,
        )
        self._downgrades = Counter(
            "tlspolicy_policy_downgrades_total",
            "Policies that got weaker than the cached one (e.g. DANE gone, STS enforce gone)",
            ["kind"],
            registry=r,
        )
        self._connections = Gauge("tlspolicy_connections", "Open socketmap connections", registry=r)
        limit = Counter(
            "tlspolicy_connection_limit_total",
            "At server.max_connections: idle connections closed for a newcomer (evicted) "
            "and newcomers refused because every connection was busy (refused)",
            ["action"],
            registry=r,
        )
        self._limit_children = {
            a: limit.labels(action=a) for a in (*CONNECTION_LIMIT_ACTIONS, OTHER)
        }
        self._cache_entries = Gauge(
            "tlspolicy_cache_entries", "Entries in the cache backend", registry=r
        )
        self._cache_entries.set(math.nan)  # unknown until a source is set
        self._resolver_validating = Gauge(
            "tlspolicy_resolver_validating",
            "1 when the resolver self-check passed (AD flag set, bogus data refused)",
            registry=r,
        )
        self._backend_up = Gauge(
            "tlspolicy_cache_backend_up", "1 when the cache backend answers", registry=r
        )
        self._bind_tlsrpt(r)
        self._bind_tlsrpt_inbound(r)
        self._bind_operator(r, ANSWERS, OTHER)
        build = Gauge(
            "tlspolicy_build_info", "Always 1; the version is a label", ["version"], registry=r
        )
        build.labels(version=__version__).set(1)

        self._query_children: dict[tuple[str, str], Counter] = {}
        self._map_labels: set[str] = set()
        for name in (*map_names, OTHER):
            self._bind_map(name)
        self._cache_children = {
            (layer, hit): self._cache.labels(layer=layer, result="hit" if hit else "miss")
            for layer in (*CACHE_LAYERS, OTHER)
            for hit in (True, False)
        }
        self._lookup_children = {
            (kind, outcome): self._lookups.labels(kind=kind, outcome=outcome)
            for kind, outcomes in LOOKUP_OUTCOMES.items()
            for outcome in outcomes
        }
        self._latency_children = {b: self._latency.labels(branch=b) for b in LOOKUP_BRANCHES}
        self._refresh_children = {
            o: self._refresh.labels(outcome=o) for o in (*REFRESH_OUTCOMES, OTHER)
        }
        self._downgrade_children = {
            k: self._downgrades.labels(kind=k) for k in (*DOWNGRADE_KINDS, OTHER)
        }

    def _bind_map(self, map_name: str) -> str:
        if map_name not in self._map_labels:
            if len(self._map_labels) >= MAX_MAP_LABELS:
                return OTHER
            self._map_labels.add(map_name)
            for answer in (*ANSWERS, OTHER):
                self._query_children[(map_name, answer)] = self._queries.labels(
                    map=map_name, answer=answer
                )
        return map_name

    def query(self, map_name: str, answer: str) -> None:
        """One answered query; ``answer`` is one of ``ANSWERS``."""
        child = self._query_children.get((map_name, answer))
        if child is None:
            label = self._bind_map(map_name)
            child = self._query_children[(label, answer if answer in ANSWERS else OTHER)]
        child.inc()

    def cache(self, layer: str, hit: bool) -> None:
        """One cache look-up in ``layer`` ("hot" or "backend")."""
        child = self._cache_children.get((layer, hit)) or self._cache_children[(OTHER, hit)]
        child.inc()

    def lookup(self, kind: str, outcome: str) -> None:
        """One DNS query, HTTPS fetch or policy parse (``LOOKUP_OUTCOMES``)."""
        child = self._lookup_children.get((kind, outcome))
        if child is None:
            if kind not in LOOKUP_OUTCOMES:
                return  # an unknown kind has no "other" series; dropping it keeps labels fixed
            child = self._lookup_children[(kind, OTHER)]
        child.inc()

    def lookup_seconds(self, branch: str, seconds: float) -> None:
        """Time taken by one uncached DANE or MTA-STS decision."""
        child = self._latency_children.get(branch)
        if child is not None:
            child.observe(seconds)

    def refresh(self, outcome: str) -> None:
        (self._refresh_children.get(outcome) or self._refresh_children[OTHER]).inc()

    def downgrade(self, kind: str) -> None:
        (self._downgrade_children.get(kind) or self._downgrade_children[OTHER]).inc()

    def set_connections(self, n: int) -> None:
        self._connections.set(n)

    def connection_limit(self, action: str) -> None:
        """One connection evicted or refused at the cap (``CONNECTION_LIMIT_ACTIONS``)."""
        (self._limit_children.get(action) or self._limit_children[OTHER]).inc()

    def set_cache_entries_source(self, fn: Callable[[], float]) -> None:
        """Compute ``tlspolicy_cache_entries`` at scrape time; NaN when ``fn`` raises.

        ``fn`` runs synchronously inside the scrape, on the event loop: it must be cheap
        (return a count the backend keeps), never a query to a remote store.
        """

        def safe() -> float:
            try:
                return float(fn())
            except Exception:
                return math.nan  # a failing backend must not break the whole scrape

        self._cache_entries.set_function(safe)

    def set_resolver_validating(self, ok: bool) -> None:
        self._resolver_validating.set(1 if ok else 0)

    def set_cache_backend_up(self, ok: bool) -> None:
        self._backend_up.set(1 if ok else 0)

    # --- TLSRPT (tlsrpt/sink.py TlsrptMetricsSink) ----------------------------------

    def _bind_tlsrpt(self, r: CollectorRegistry) -> None:
        datagrams = Counter(
            "tlspolicy_tlsrpt_datagrams_total",
            "TLSRPT datagrams from Postfix: received, invalid (not parsable), dropped (as "
            "reported by the kernel; Linux reports none for AF_UNIX)",
            ["outcome"],
            registry=r,
        )
        sessions = Counter(
            "tlspolicy_tlsrpt_sessions_total",
            "TLS sessions reported by Postfix, by policy type and result",
            ["policy_type", "result"],
            registry=r,
        )
        reports = Counter(
            "tlspolicy_tlsrpt_reports_total",
            "TLSRPT report deliveries by method (mailto, https) and outcome",
            ["method", "outcome"],
            registry=r,
        )
        self._tlsrpt_late = Counter(
            "tlspolicy_tlsrpt_late_sessions_total",
            "TLS sessions stored for a day after that day's report was built (not reported)",
            registry=r,
        )
        self._tlsrpt_datagrams = {
            o: datagrams.labels(outcome=o) for o in (*TLSRPT_DATAGRAM_OUTCOMES, OTHER)
        }
        self._tlsrpt_sessions = {
            (t, res): sessions.labels(policy_type=t, result=res)
            for t in (*TLSRPT_POLICY_TYPES, OTHER)
            for res in TLSRPT_SESSION_RESULTS
        }
        self._tlsrpt_reports = {
            (m, o): reports.labels(method=m, outcome=o)
            for m in (*TLSRPT_REPORT_METHODS, OTHER)
            for o in TLSRPT_REPORT_OUTCOMES
        }

    def tlsrpt_datagrams(self, outcome: str, n: int = 1) -> None:
        (self._tlsrpt_datagrams.get(outcome) or self._tlsrpt_datagrams[OTHER]).inc(n)

    def tlsrpt_session(self, policy_type: str, result: str) -> None:
        child = self._tlsrpt_sessions.get((policy_type, result))
        if child is None:
            child = self._tlsrpt_sessions.get((OTHER, result))
        if child is not None:
            child.inc()

    def tlsrpt_late(self, n: int) -> None:
        self._tlsrpt_late.inc(n)

    def tlsrpt_report(self, method: str, outcome: str) -> None:
        child = self._tlsrpt_reports.get((method, outcome))
        if child is None:
            child = self._tlsrpt_reports.get((OTHER, outcome))
        if child is not None:
            child.inc()

    # --- inbound TLSRPT (reports others send us, tlsrpt/inbound_metrics.py) ----------

    def _bind_tlsrpt_inbound(self, r: CollectorRegistry) -> None:
        """Domain labels come from ``tlsrpt.inbound_domains`` (the caller maps every other
        domain to ``other``); at most ``MAX_INBOUND_DOMAIN_LABELS`` are bound, later ones
        count as ``other`` too."""
        reports = Counter(
            "tlspolicy_tlsrpt_inbound_reports_total",
            "TLSRPT reports received from other senders, by transport (mail, https, file)"
            " and verdict (accepted, duplicate, invalid, unsigned, too-large, ...)",
            ["transport", "verdict"],
            registry=r,
        )
        self._inbound_reports = {
            (t, v): reports.labels(transport=t, verdict=v)
            for t in (*TLSRPT_INBOUND_TRANSPORTS, OTHER)
            for v in (*TLSRPT_INBOUND_VERDICTS, OTHER)
        }
        self._inbound_sessions_metric = Counter(
            "tlspolicy_tlsrpt_inbound_sessions_total",
            "TLS sessions in accepted received reports, by policy domain and result"
            " (successful, failed)",
            ["policy_domain", "result"],
            registry=r,
        )
        self._inbound_failures_metric = Counter(
            "tlspolicy_tlsrpt_inbound_failures_total",
            "Failed TLS sessions in accepted received reports, by policy domain and RFC 8460"
            " result type",
            ["policy_domain", "result_type"],
            registry=r,
        )
        self._inbound_domains: set[str] = set()
        for res in TLSRPT_SESSION_RESULTS:  # bound up front: exported before any report
            self._inbound_sessions_metric.labels(policy_domain=OTHER, result=res)
        for kind in (*TLSRPT_RESULT_TYPES, OTHER):
            self._inbound_failures_metric.labels(policy_domain=OTHER, result_type=kind)

    def _inbound_domain(self, domain: str) -> str:
        if domain in self._inbound_domains or domain == OTHER:
            return domain
        if len(self._inbound_domains) >= MAX_INBOUND_DOMAIN_LABELS:
            return OTHER
        self._inbound_domains.add(domain)
        return domain

    def tlsrpt_inbound_report(self, transport: str, verdict: str) -> None:
        t = transport if transport in TLSRPT_INBOUND_TRANSPORTS else OTHER
        v = verdict if verdict in TLSRPT_INBOUND_VERDICTS else OTHER
        self._inbound_reports[(t, v)].inc()

    def tlsrpt_inbound_sessions(self, domain: str, result: str, n: int) -> None:
        res = result if result in TLSRPT_SESSION_RESULTS else OTHER
        d = self._inbound_domain(domain)
        self._inbound_sessions_metric.labels(policy_domain=d, result=res).inc(n)

    def tlsrpt_inbound_failures(self, domain: str, result_type: str, n: int) -> None:
        kind = result_type if result_type in TLSRPT_RESULT_TYPES else OTHER
        d = self._inbound_domain(domain)
        self._inbound_failures_metric.labels(policy_domain=d, result_type=kind).inc(n)

    def _bind_operator(self, r: CollectorRegistry, answers: tuple[str, ...], other: str) -> None:
        """Overrides, shadow mode and drift (docs/operator-control.md): fixed label sets, no
        domains."""
        self._other = other
        overrides = Counter(
            "tlspolicy_override_answers_total",
            "Queries an operator override matched, by state (expired: ignored, looked up)",
            ["state"],
            registry=r,
        )
        self._override_children = {s: overrides.labels(state=s) for s in (*OVERRIDE_STATES, other)}
        shadow = Counter(
            "tlspolicy_shadow_answers_total",
            "What shadow maps would have answered (they answer NOTFOUND)",
            ["answer"],
            registry=r,
        )
        self._shadow_children = {a: shadow.labels(answer=a) for a in (*answers, other)}
        drift = Counter(
            "tlspolicy_policy_drift_total",
            "Cached enforcing policies that stopped covering the current MX hosts, by kind",
            ["kind"],
            registry=r,
        )
        self._drift_children = {k: drift.labels(kind=k) for k in (*DRIFT_KINDS, other)}

    def override(self, state: str) -> None:
        self._override_children.get(state, self._override_children[self._other]).inc()

    def shadow(self, answer: str) -> None:
        self._shadow_children.get(answer, self._shadow_children[self._other]).inc()

    def drift(self, kind: str) -> None:
        self._drift_children.get(kind, self._drift_children[self._other]).inc()
