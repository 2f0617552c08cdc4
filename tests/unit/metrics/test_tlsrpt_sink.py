"""TLSRPT metrics: fixed label sets, unknown values counted as "other", never a domain."""

from __future__ import annotations

from prometheus_client import generate_latest

from tlspolicy.metrics.registry import Metrics
from tlspolicy.metrics.sink import NULL_TLSRPT_METRICS, NullMetrics, TlsrptMetricsSink


def test_sink_prometheus_counters() -> None:
    metrics = Metrics()
    sink: TlsrptMetricsSink = metrics
    sink.tlsrpt_datagrams("received", 3)
    sink.tlsrpt_datagrams("invalid")
    sink.tlsrpt_session("sts", "failed")
    sink.tlsrpt_session("example.com", "successful")  # not a policy type: "other"
    sink.tlsrpt_report("https", "sent")
    text = generate_latest(metrics.registry).decode()
    assert 'tlspolicy_tlsrpt_datagrams_total{outcome="received"} 3.0' in text
    assert 'tlspolicy_tlsrpt_datagrams_total{outcome="dropped"} 0.0' in text
    assert 'tlspolicy_tlsrpt_sessions_total{policy_type="sts",result="failed"} 1.0' in text
    assert 'tlspolicy_tlsrpt_sessions_total{policy_type="other",result="successful"} 1.0' in text
    assert 'tlspolicy_tlsrpt_reports_total{method="https",outcome="sent"} 1.0' in text
    assert "example.com" not in text


def test_sink_null_implementations_accept_everything() -> None:
    for sink in (NullMetrics(), NULL_TLSRPT_METRICS):
        sink.tlsrpt_datagrams("received")
        sink.tlsrpt_session("tlsa", "failed")
        sink.tlsrpt_report("mailto", "failed")
