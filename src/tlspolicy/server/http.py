"""The metrics and health listener (``server.metrics_listen``): a tiny aiohttp web server.

Routes (anything else is 404, a wrong method 405):
* ``GET``/``HEAD /metrics``: the Prometheus text exposition of ``Metrics.registry``.
* ``GET``/``HEAD /healthz``: 200 ``ok`` when the health callable says so, else 503 with its
  reason, one line of plain text, for load balancers and ``curl -f``. With ``?format=json``
  (or ``Accept: application/json``) the same status with a JSON body: ``ok``, ``reason``
  and the detail callable's fields (e.g. overrides that weaken DANE/MTA-STS domains).

It is kept apart from the socketmap listeners (the Postfix protocol stays free of HTTP
sniffing, unlike postfix-tlspol; docs/protocol-notes.md §7.3) and has no access log: a scrape
every few seconds would drown the query log.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tlspolicy.errors import ConfigError
from tlspolicy.metrics.registry import Metrics

log = logging.getLogger(__name__)

HealthResult = tuple[bool, str]
HealthCheck = Callable[[], HealthResult | Awaitable[HealthResult]]
HealthDetail = Callable[[], dict[str, Any]]

# A health probe that has not answered in this many seconds counts as unhealthy; load
# balancers and Kubernetes default to 1-10 s probe timeouts.
HEALTH_TIMEOUT_S = 5.0
# In-flight scrapes get this long on stop; a scrape takes milliseconds.
SHUTDOWN_TIMEOUT_S = 1.0


class HttpEndpoint:
    """Serves ``/metrics`` and ``/healthz``.

    Args:
        metrics: whose registry ``/metrics`` exposes.
        health: returns ``(ok, reason)``; may be a plain function or a coroutine function
            (for checks that ping a backend). An exception or a wait longer than
            ``HEALTH_TIMEOUT_S`` counts as unhealthy.
    """

    def __init__(
        self, metrics: Metrics, health: HealthCheck, detail: HealthDetail | None = None
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.detail = detail
        self._runner: web.AppRunner | None = None

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, reason = await self._check()
        wants_json = request.query.get("format") == "json" or "application/json" in (
            request.headers.get("Accept", "")
        )
        if wants_json:
            body: dict[str, Any] = {"ok": ok, "reason": _one_line(reason) if not ok else "ok"}
            if self.detail is not None:
                try:
                    body.update(self.detail())
                except Exception:  # the detail must never turn a healthy probe into a 500
                    log.exception("health detail failed")
            return web.json_response(body, status=200 if ok else 503)
        if ok:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=f"{_one_line(reason)}\n")

    async def _check(self) -> HealthResult:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                result = self.health()
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            return False, f"health check did not finish within {HEALTH_TIMEOUT_S:g} s"
        except Exception as exc:
            log.exception("health check failed")
            return False, f"health check failed: {exc.__class__.__name__}: {exc}"
        ok, reason = result
        return bool(ok), reason or ("ok" if ok else "unhealthy")

    async def _serve(self, make_site: Callable[[web.AppRunner], web.BaseSite], where: str) -> str:
        if self._runner is not None:
            raise RuntimeError("HttpEndpoint already started")
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            await make_site(runner).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"server.metrics_listen: cannot listen on {where}: {exc.strerror or exc}"
            ) from None
        self._runner = runner
        return _address_name(runner.addresses[0])

    async def start(self, host: str, port: int) -> str:
        """Listen on TCP ``host:port`` (port 0: any free port).

        Returns:
            the bound address as ``host:port`` (``[v6]:port`` for IPv6).

        Raises:
            ConfigError: the address cannot be bound (in use, not local, no permission).
        """
        return await self._serve(
            lambda runner: web.TCPSite(runner, host, port, reuse_address=True),
            f"{host}:{port}",
        )

    async def start_unix(self, path: str) -> str:
        """Listen on a unix socket at ``path``; returns ``unix:PATH``.

        Raises:
            ConfigError: the socket cannot be created.
        """
        return await self._serve(lambda runner: web.UnixSite(runner, path), f"unix:{path}")

    async def stop(self) -> None:
        """Close the listener; a no-op when not started."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def _address_name(address: object) -> str:
    if isinstance(address, str | bytes):
        return f"unix:{address.decode() if isinstance(address, bytes) else address}"
    if isinstance(address, tuple):
        host, port = str(address[0]), int(address[1])
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unhealthy"
