"""Metrics: fixed label sets, bucketing of unknown values, scrape-time gauges."""

from __future__ import annotations

import math

import pytest
from prometheus_client import REGISTRY, generate_latest

from tlspolicy import __version__
from tlspolicy.metrics.registry import Metrics
from tlspolicy.metrics.sink import (
    ANSWERS,
    LOOKUP_OUTCOMES,
    MAX_MAP_LABELS,
    NULL_METRICS,
    MetricsSink,
    NullMetrics,
)


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_metrics_query_counts_per_map_and_answer() -> None:
    m = Metrics(map_names=["QUERY", "QUERYwithTLSRPT"])
    m.query("QUERY", "dane-only")
    m.query("QUERY", "dane-only")
    m.query("QUERYwithTLSRPT", "secure")
    assert value(m, "tlspolicy_queries_total", map="QUERY", answer="dane-only") == 2
    assert value(m, "tlspolicy_queries_total", map="QUERYwithTLSRPT", answer="secure") == 1
    # pre-bound series exist at zero before the first query
    assert value(m, "tlspolicy_queries_total", map="QUERYwithTLSRPT", answer="temp") == 0


def test_metrics_query_buckets_unknown_answer_as_other() -> None:
    m = Metrics(map_names=["QUERY"])
    m.query("QUERY", "something-new")
    assert value(m, "tlspolicy_queries_total", map="QUERY", answer="other") == 1


def test_metrics_query_caps_distinct_map_names() -> None:
    m = Metrics()
    for i in range(MAX_MAP_LABELS + 5):
        m.query(f"map{i}", "notfound")
    maps = {
        s.labels["map"]
        for f in m.registry.collect()
        if f.name == "tlspolicy_queries"
        for s in f.samples
    }
    assert len(maps) == MAX_MAP_LABELS
    assert "other" in maps
    # names past the cap are counted, under "other"
    total = sum(
        value(m, "tlspolicy_queries_total", map=name, answer="notfound") or 0 for name in maps
    )
    assert total == MAX_MAP_LABELS + 5


@pytest.mark.parametrize(
    ("layer", "hit", "labels"),
    [
        pytest.param("hot", True, {"layer": "hot", "result": "hit"}, id="hot-hit"),
        pytest.param("backend", False, {"layer": "backend", "result": "miss"}, id="backend-miss"),
        pytest.param("l3", True, {"layer": "other", "result": "hit"}, id="unknown-layer"),
    ],
)
def test_metrics_cache_counts_hits_and_misses(
    layer: str, hit: bool, labels: dict[str, str]
) -> None:
    m = Metrics()
    m.cache(layer, hit)
    assert value(m, "tlspolicy_cache_requests_total", **labels) == 1


@pytest.mark.parametrize(
    ("kind", "outcome", "labels"),
    [
        pytest.param("dns", "servfail", {"kind": "dns", "outcome": "servfail"}, id="dns-servfail"),
        pytest.param("dns", "bogus", {"kind": "dns", "outcome": "bogus"}, id="dns-bogus"),
        pytest.param(
            "https", "certificate", {"kind": "https", "outcome": "certificate"}, id="https"
        ),
        pytest.param("policy", "invalid", {"kind": "policy", "outcome": "invalid"}, id="policy"),
        pytest.param("dns", "weird", {"kind": "dns", "outcome": "other"}, id="unknown-outcome"),
    ],
)
def test_metrics_lookup_counts_by_kind_and_outcome(
    kind: str, outcome: str, labels: dict[str, str]
) -> None:
    m = Metrics()
    m.lookup(kind, outcome)
    assert value(m, "tlspolicy_lookups_total", **labels) == 1


def test_metrics_lookup_drops_unknown_kind() -> None:
    m = Metrics()
    m.lookup("ftp", "ok")
    kinds = {
        s.labels["kind"]
        for f in m.registry.collect()
        if f.name == "tlspolicy_lookups"
        for s in f.samples
    }
    assert kinds == set(LOOKUP_OUTCOMES)


def test_metrics_lookup_outcomes_cover_error_kinds() -> None:
    # errors.py documents the DnsError and FetchError kinds; each needs its own series.
    dns_kinds = {"servfail", "timeout", "refused", "malformed", "network", "other"}
    fetch_kinds = {
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
        "other",
    }
    assert dns_kinds <= set(LOOKUP_OUTCOMES["dns"])
    assert fetch_kinds <= set(LOOKUP_OUTCOMES["https"])


def test_metrics_lookup_seconds_fills_histogram() -> None:
    m = Metrics()
    m.lookup_seconds("dane", 0.003)
    m.lookup_seconds("dane", 12.0)
    m.lookup_seconds("nope", 1.0)  # ignored
    assert value(m, "tlspolicy_lookup_duration_seconds_count", branch="dane") == 2
    assert value(m, "tlspolicy_lookup_duration_seconds_bucket", branch="dane", le="0.005") == 1
    assert value(m, "tlspolicy_lookup_duration_seconds_bucket", branch="dane", le="20.0") == 2
    assert value(m, "tlspolicy_lookup_duration_seconds_count", branch="mta_sts") == 0


def test_metrics_refresh_and_downgrade_count() -> None:
    m = Metrics()
    m.refresh("success")
    m.refresh("bad-token")
    m.downgrade("mta_sts")
    assert value(m, "tlspolicy_refresh_total", outcome="success") == 1
    assert value(m, "tlspolicy_refresh_total", outcome="other") == 1
    assert value(m, "tlspolicy_policy_downgrades_total", kind="mta_sts") == 1


def test_metrics_gauges_follow_the_last_value() -> None:
    m = Metrics()
    m.set_connections(7)
    m.set_resolver_validating(True)
    m.set_cache_backend_up(False)
    assert value(m, "tlspolicy_connections") == 7
    assert value(m, "tlspolicy_resolver_validating") == 1
    assert value(m, "tlspolicy_cache_backend_up") == 0
    assert value(m, "tlspolicy_build_info", version=__version__) == 1


def test_metrics_cache_entries_computed_at_scrape_time() -> None:
    m = Metrics()
    assert math.isnan(value(m, "tlspolicy_cache_entries") or 0.0)
    size = [3]
    m.set_cache_entries_source(lambda: size[0])
    assert value(m, "tlspolicy_cache_entries") == 3
    size[0] = 10
    assert value(m, "tlspolicy_cache_entries") == 10


def test_metrics_cache_entries_source_failure_is_nan_not_a_broken_scrape() -> None:
    m = Metrics()

    def broken() -> float:
        raise RuntimeError("backend down")

    m.set_cache_entries_source(broken)
    assert b"tlspolicy_cache_entries NaN" in generate_latest(m.registry)


def test_metrics_use_their_own_registry() -> None:
    Metrics()
    Metrics()  # a second instance must not clash on names
    assert REGISTRY.get_sample_value("tlspolicy_connections") is None


def test_metrics_null_metrics_accepts_every_call() -> None:
    sink: MetricsSink = NULL_METRICS
    assert isinstance(sink, NullMetrics)
    for answer in ANSWERS:
        sink.query("QUERY", answer)
    sink.cache("hot", True)
    sink.lookup("dns", "ok")
    sink.lookup_seconds("dane", 1.0)
    sink.refresh("success")
    sink.downgrade("dane")
    sink.set_connections(1)
    sink.set_cache_entries_source(lambda: 1.0)
    sink.set_resolver_validating(True)
    sink.set_cache_backend_up(True)


def test_metrics_scrape_has_process_and_python_series_and_no_created() -> None:
    m = Metrics(map_names=["QUERY"])
    m.query("QUERY", "dane-only")
    lines = generate_latest(m.registry).decode().splitlines()
    names = {line.split("{")[0].split(" ")[0] for line in lines if not line.startswith("#")}
    assert not [n for n in names if n.endswith("_created")]
    assert "process_resident_memory_bytes" in names
    assert "process_open_fds" in names
    assert "python_info" in names
    assert "python_gc_collections_total" in names
