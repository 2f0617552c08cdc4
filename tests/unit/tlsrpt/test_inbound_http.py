"""The inbound HTTPS endpoint on loopback, with a real SQLite store and real metrics."""

from __future__ import annotations

import copy
import gzip
import io
import json
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import generate_latest

from tests.unit.tlsrpt.inbound_vectors import (
    OUR_DAY,
    POLICY_ITEM,
    RFC8460_EXAMPLE,
    gz,
    our_report,
    sys4_reporter,
)
from tlspolicy.config.tlsrpt import TlsrptConfig
from tlspolicy.metrics.registry import Metrics
from tlspolicy.tlsrpt import inbound
from tlspolicy.tlsrpt.inbound_http import InboundEndpoint
from tlspolicy.tlsrpt.inbound_metrics import InboundCounter
from tlspolicy.tlsrpt.sqlite_backend import SqliteReportStore

GZIP = {"Content-Type": "application/tlsrpt+gzip"}
JSON = {"Content-Type": "application/tlsrpt+json"}


class Site:
    def __init__(self, endpoint: InboundEndpoint, store: SqliteReportStore, metrics: Metrics):
        self.endpoint, self.store, self.metrics = endpoint, store, metrics
        self.url = f"http://{endpoint.address}/tlsrpt"

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=io.BytesIO(body), headers=headers) as response,
        ):
            return response.status, await response.text()

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    config = replace(TlsrptConfig(), inbound_listen="127.0.0.1:0", inbound_rate=1000,
                     inbound_domains=("rcpt.example",))  # fmt: skip
    store = SqliteReportStore(str(tmp_path / "tlsrpt.sqlite3"))
    await store.open()
    metrics = Metrics()
    endpoint = InboundEndpoint(config, store, metrics)
    await endpoint.start()
    try:
        yield Site(endpoint, store, metrics)
    finally:
        await endpoint.stop()
        await store.aclose()


async def test_inbound_http_accepts_three_reporters_once(site: Site, tmp_path: Path) -> None:
    counter = InboundCounter(site.store, site.metrics, ("rcpt.example",))
    await counter.poll()  # starts from the newest row
    sys4 = sys4_reporter(tmp_path)
    assert (await site.post(gz(our_report()), GZIP))[0] == 201
    assert (await site.post(sys4.gzipped, GZIP))[0] == 201
    assert (await site.post(json.dumps(RFC8460_EXAMPLE).encode(), JSON))[0] == 201
    assert (await site.post(gz(RFC8460_EXAMPLE), GZIP))[0] == 201  # duplicate: stop sending
    policies = await site.store.received_policies(date(2016, 1, 1))
    assert sorted((p.domain, p.successful, p.failed) for p in policies) == [
        ("company-y.example", 5326, 303), ("rcpt.example", 45, 5), ("rcpt.example", 90, 10)
    ]  # fmt: skip
    assert await counter.poll() == 4
    m = site.metric
    assert m("tlspolicy_tlsrpt_inbound_reports_total", transport="https", verdict="accepted") == 3
    assert m("tlspolicy_tlsrpt_inbound_reports_total", transport="https", verdict="duplicate") == 1
    assert (
        m("tlspolicy_tlsrpt_inbound_sessions_total", policy_domain="rcpt.example", result="failed")
        == 15
    )
    assert (
        m("tlspolicy_tlsrpt_inbound_sessions_total", policy_domain="other", result="successful")
        == 5326
    )
    assert m("tlspolicy_tlsrpt_inbound_failures_total", policy_domain="rcpt.example",
             result_type="certificate-expired") == 12  # fmt: skip
    assert b"company-y.example" not in generate_latest(site.metrics.registry)


async def test_inbound_http_wrong_content_type_is_415(site: Site) -> None:
    for content_type in ("application/json", "application/gzip", "text/plain", ""):
        status, _ = await site.post(gz(RFC8460_EXAMPLE), {"Content-Type": content_type})
        assert status == 415
    assert site.metric("tlspolicy_tlsrpt_inbound_reports_total", transport="https",
                       verdict="wrong-type") == 4  # fmt: skip


async def test_inbound_http_invalid_report_is_400_with_the_reason(site: Site) -> None:
    report = copy.deepcopy(RFC8460_EXAMPLE)
    del report["report-id"]
    status, text = await site.post(json.dumps(report).encode(), JSON)
    assert (status, "report-id" in text) == (400, True)
    assert (await site.post(b"\x1f\x8bnot really", GZIP))[0] == 400


async def test_inbound_http_hostile_bodies_are_413_with_bounded_memory(site: Site) -> None:
    bomb = gzip.compress(b"[" * (256 * 1024 * 1024))  # 256 MB in ~250 KB
    deep = b"[" * 1_000_000 + b"]" * 1_000_000
    item = POLICY_ITEM
    many = gz({**RFC8460_EXAMPLE, "policies": [item] * 100_000})
    over = gz({**RFC8460_EXAMPLE, "policies": [item] * (inbound.MAX_POLICIES + 1)})
    tracemalloc.start()
    try:
        results = [
            await site.post(bomb, GZIP),
            await site.post(deep, JSON),
            await site.post(many, GZIP),
            await site.post(over, GZIP),
            await site.post(b"x" * (inbound.MAX_REPORT_BYTES + 1), JSON),
        ]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [status for status, _ in results] == [413] * 5, results
    assert "ratio" in results[0][1] and "deeper" in results[1][1]
    assert "policies" in results[3][1]
    # Everything this process allocated meanwhile, the client's copies of the bodies too.
    assert peak < 8 * inbound.MAX_REPORT_BYTES, peak
    assert await site.store.received_policies(date(2016, 1, 1)) == []


async def test_inbound_http_rate_limit_per_source_is_429(tmp_path: Path) -> None:
    config = replace(TlsrptConfig(), inbound_listen="127.0.0.1:0", inbound_rate=3)
    store = SqliteReportStore(str(tmp_path / "s.sqlite3"))
    await store.open()
    endpoint = InboundEndpoint(config, store, Metrics())
    await endpoint.start()
    site = Site(endpoint, store, Metrics())
    try:
        statuses = [(await site.post(b"{}", JSON))[0] for _ in range(4)]
        proxied = (await site.post(b"{}", {**JSON, "X-Forwarded-For": "192.0.2.1"}))[0]
    finally:
        await endpoint.stop()
        await store.aclose()
    assert statuses == [400, 400, 400, 429]
    assert proxied == 400  # behind the (trusted, loopback) proxy: another source


async def test_inbound_http_store_down_is_503(site: Site) -> None:
    await site.store.aclose()
    status, _ = await site.post(gz(our_report()), GZIP)
    assert status == 503
    await site.store.open()
    assert (await site.post(gz(our_report()), GZIP))[0] == 201
    assert [p.day for p in await site.store.received_policies(OUR_DAY)] == [OUR_DAY]
