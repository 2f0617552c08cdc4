"""``serve`` builds Prometheus metrics only when ``server.metrics_listen`` serves them."""

from __future__ import annotations

from tlspolicy.config import parse_config
from tlspolicy.metrics.registry import Metrics
from tlspolicy.metrics.sink import NullMetrics
from tlspolicy.server.lifecycle import Runner


async def test_serve_without_a_metrics_listener_counts_nothing() -> None:
    runner = Runner(parse_config({}), None)
    assert isinstance(runner.metrics, NullMetrics)
    assert runner.server.metrics is runner.metrics


async def test_serve_with_a_metrics_listener_has_prometheus_metrics() -> None:
    runner = Runner(parse_config({"server": {"metrics_listen": "127.0.0.1:9100"}}), None)
    assert isinstance(runner.metrics, Metrics)
