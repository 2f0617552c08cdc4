"""The metrics/health listener, scraped over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from tlspolicy.errors import ConfigError
from tlspolicy.metrics.registry import Metrics
from tlspolicy.server import http
from tlspolicy.server.http import HttpEndpoint

Health = Callable[[], tuple[bool, str] | Awaitable[tuple[bool, str]]]


class Switch:
    """A health callable whose answer the test sets."""

    def __init__(self) -> None:
        self.state: tuple[bool, str] = (True, "")

    def __call__(self) -> tuple[bool, str]:
        return self.state


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[HttpEndpoint, Metrics, Switch, str]]:
    metrics = Metrics(map_names=["QUERY"])
    switch = Switch()
    ep = HttpEndpoint(metrics, switch)
    name = await ep.start("127.0.0.1", 0)
    yield ep, metrics, switch, f"http://{name}"
    await ep.stop()


async def get(url: str, method: str = "GET") -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def test_http_metrics_scrape_shows_counters_after_queries(endpoint) -> None:
    _, metrics, _, base = endpoint
    metrics.query("QUERY", "dane-only")
    metrics.query("QUERY", "dane-only")
    metrics.query("QUERY", "notfound")
    metrics.cache("hot", True)
    metrics.lookup_seconds("mta_sts", 0.2)
    status, ctype, body = await get(base + "/metrics")
    assert status == 200
    assert ctype.split(";")[0] == CONTENT_TYPE_LATEST.split(";")[0]
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert samples[("tlspolicy_queries_total", (("answer", "dane-only"), ("map", "QUERY")))] == 2
    assert samples[("tlspolicy_queries_total", (("answer", "notfound"), ("map", "QUERY")))] == 1
    assert samples[("tlspolicy_cache_requests_total", (("layer", "hot"), ("result", "hit")))] == 1
    assert samples[("tlspolicy_lookup_duration_seconds_count", (("branch", "mta_sts"),))] == 1


async def test_http_metrics_head_has_no_body(endpoint) -> None:
    _, _, _, base = endpoint
    status, ctype, body = await get(base + "/metrics", "HEAD")
    assert (status, body) == (200, "")
    assert ctype.startswith("text/plain")


@pytest.mark.parametrize(
    ("state", "status", "body"),
    [
        pytest.param((True, ""), 200, "ok\n", id="healthy"),
        pytest.param((True, "all good"), 200, "ok\n", id="healthy-with-reason"),
        pytest.param((False, "cache backend down"), 503, "cache backend down\n", id="unhealthy"),
        pytest.param((False, "two\nlines"), 503, "two lines\n", id="reason-one-line"),
    ],
)
async def test_http_healthz_reports_health(
    endpoint, state: tuple[bool, str], status: int, body: str
) -> None:
    _, _, switch, base = endpoint
    switch.state = state
    assert (await get(base + "/healthz"))[::2] == (status, body)


async def serve_health(health: Health) -> tuple[HttpEndpoint, str]:
    ep = HttpEndpoint(Metrics(), health)
    return ep, "http://" + await ep.start("127.0.0.1", 0)


async def test_http_healthz_awaits_async_health() -> None:
    async def check() -> tuple[bool, str]:
        await asyncio.sleep(0)
        return False, "resolver does not validate"

    ep, base = await serve_health(check)
    try:
        assert (await get(base + "/healthz"))[::2] == (503, "resolver does not validate\n")
    finally:
        await ep.stop()


async def test_http_healthz_exception_is_unhealthy() -> None:
    def check() -> tuple[bool, str]:
        raise RuntimeError("boom")

    ep, base = await serve_health(check)
    try:
        status, _, body = await get(base + "/healthz")
    finally:
        await ep.stop()
    assert status == 503
    assert body == "health check failed: RuntimeError: boom\n"


async def test_http_healthz_slow_check_is_unhealthy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "HEALTH_TIMEOUT_S", 0.05)

    async def check() -> tuple[bool, str]:
        await asyncio.sleep(5)
        return True, ""

    ep, base = await serve_health(check)
    try:
        status, _, body = await get(base + "/healthz")
    finally:
        await ep.stop()
    assert status == 503
    assert "did not finish" in body


@pytest.mark.parametrize(
    ("path", "method", "status"),
    [
        pytest.param("/", "GET", 404, id="root"),
        pytest.param("/metrics/x", "GET", 404, id="sub-path"),
        pytest.param("/metrics", "POST", 405, id="post"),
    ],
)
async def test_http_other_requests_are_refused(
    endpoint, path: str, method: str, status: int
) -> None:
    _, _, _, base = endpoint
    assert (await get(base + path, method))[0] == status


async def test_http_start_on_busy_port_raises_config_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ep = HttpEndpoint(Metrics(), lambda: (True, ""))
        with pytest.raises(
            ConfigError, match=r"server.metrics_listen: cannot listen on 127.0.0.1:"
        ):
            await ep.start("127.0.0.1", port)
        await ep.stop()


async def test_http_stop_closes_the_port() -> None:
    ep = HttpEndpoint(Metrics(), lambda: (True, ""))
    name = await ep.start("127.0.0.1", 0)
    port = int(name.rsplit(":", 1)[1])
    await ep.stop()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_http_unix_socket_serves_metrics(tmp_path: Path) -> None:
    ep = HttpEndpoint(Metrics(), lambda: (True, ""))
    path = str(tmp_path / "metrics.sock")
    assert await ep.start_unix(path) == f"unix:{path}"
    try:
        connector = aiohttp.UnixConnector(path=path)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get("http://localhost/healthz") as response,
        ):
            assert (response.status, await response.text()) == (200, "ok\n")
    finally:
        await ep.stop()
