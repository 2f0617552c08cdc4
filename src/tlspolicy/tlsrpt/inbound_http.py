"""The inbound HTTPS endpoint (``tlsrpt.inbound_listen``): ``POST /tlsrpt`` (RFC 8460 §5.4).

Plain HTTP on an address of the operator's choice, meant to sit behind their TLS reverse
proxy (which owns the certificate of the ``https:`` rua). Answers:

* 201: stored, or already stored (a sender that retries must stop, so a duplicate is a
  success too);
* 400: not a valid RFC 8460 §4 report (the reason is the body);
* 413: over a limit (``inbound.py``: gzip and JSON size, gzip ratio, JSON depth, policies
  and failure details); the body is read in chunks and never beyond the limit, whatever
  ``Content-Length`` says;
* 415: not ``application/tlsrpt+gzip`` or ``application/tlsrpt+json``;
* 429: the source sent more than ``tlsrpt.inbound_rate`` requests this minute
  (``inbound_rate.py``); the source is the peer, or the last ``X-Forwarded-For`` address
  when the peer is one of ``tlsrpt.inbound_trusted_proxies``;
* 503: the store is down (the sender retries, §5.5).

A body that does not arrive within ``READ_TIMEOUT_S`` ends the request (slow senders
hold no memory for long). Refusals before the store are counted here; what reaches the
store is counted from its log (``inbound_metrics.py``), whichever process stored it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable

from aiohttp import web

from tlspolicy.config.tlsrpt import TlsrptConfig
from tlspolicy.errors import InboundReportError, ReportStoreError
from tlspolicy.metrics.sink import TlsrptMetricsSink
from tlspolicy.tlsrpt.inbound import (
    MAX_COMPRESSED_BYTES,
    MAX_REPORT_BYTES,
    Kind,
    Transport,
    Verdict,
    kind_of,
)
from tlspolicy.tlsrpt.inbound_rate import RateLimiter
from tlspolicy.tlsrpt.inbound_receive import receive_body
from tlspolicy.tlsrpt.store import ReportStore

PATH = "/tlsrpt"
READ_TIMEOUT_S = 30.0
READ_CHUNK = 64 * 1024
SHUTDOWN_TIMEOUT_S = 1.0
STATUS = {
    Verdict.ACCEPTED: 201,
    Verdict.DUPLICATE: 201,
    Verdict.INVALID: 400,
    Verdict.TOO_LARGE: 413,
    Verdict.WRONG_TYPE: 415,
    Verdict.RATE_LIMITED: 429,
}

log = logging.getLogger("tlspolicy.tlsrpt.inbound")


class InboundEndpoint:
    """Serves ``POST /tlsrpt`` into ``store``; ``bind`` before privileges drop."""

    def __init__(
        self,
        config: TlsrptConfig,
        store: ReportStore,
        metrics: TlsrptMetricsSink,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.limiter = RateLimiter(config.inbound_rate)
        self.trusted = frozenset(ipaddress.ip_address(a) for a in config.inbound_trusted_proxies)
        self._socket: socket.socket | None = None
        self._runner: web.AppRunner | None = None

    def bind(self) -> None:
        assert self.config.inbound_listen is not None
        host, _, port = self.config.inbound_listen.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, int(port)))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._socket = sock

    @property
    def address(self) -> str:
        assert self._socket is not None
        host, port = self._socket.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def start(self) -> None:
        if self._socket is None:
            self.bind()
        assert self._socket is not None
        app = web.Application()
        app.router.add_post(PATH, self._post)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        await web.SockSite(runner, self._socket).start()
        self._runner = runner
        log.info("TLSRPT reports accepted on http://%s%s", self.address, PATH)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    def source(self, request: web.Request) -> str:
        peer = request.remote or ""
        try:
            trusted = ipaddress.ip_address(peer) in self.trusted
        except ValueError:
            trusted = False
        forwarded = request.headers.get("X-Forwarded-For", "")
        if trusted and forwarded:
            return forwarded.rsplit(",", 1)[-1].strip()[:64]
        return peer

    async def _post(self, request: web.Request) -> web.Response:
        source = self.source(request)
        if not self.limiter.allow(source, self.clock()):
            return self._refuse(Verdict.RATE_LIMITED, "too many requests, try in a minute",
                                headers={"Retry-After": "60"})  # fmt: skip
        try:
            kind = kind_of(request.headers.get("Content-Type", ""))
            body = await _read_body(request, kind)
        except InboundReportError as exc:
            return self._refuse(exc.verdict, exc.reason)
        except TimeoutError:
            return self._refuse(Verdict.INVALID, "the body did not arrive in time")
        try:
            result = await receive_body(
                body, kind, self.store, transport=Transport.HTTPS, now=self.clock()
            )
        except ReportStoreError as exc:
            log.error("TLSRPT report from %s not stored, store down: %s", source, exc)
            return web.Response(status=503, text="store unavailable, try later\n",
                                headers={"Retry-After": "300"})  # fmt: skip
        status = STATUS.get(Verdict(result.verdict), 400)
        text = "stored" if status == 201 else result.reason
        return web.Response(status=status, text=f"{text}\n")

    def _refuse(
        self, verdict: str, reason: str, *, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.metrics.tlsrpt_inbound_report(Transport.HTTPS, verdict)
        return web.Response(status=STATUS.get(Verdict(verdict), 400), text=f"{reason}\n",
                            headers=headers)  # fmt: skip


async def _read_body(request: web.Request, kind: Kind) -> bytes:
    """The body, never more than the limit for ``kind`` (a longer one is refused)."""
    limit = MAX_COMPRESSED_BYTES if kind is Kind.GZIP else MAX_REPORT_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise InboundReportError(Verdict.TOO_LARGE, f"body over {limit} bytes")
    body = bytearray()
    async with asyncio.timeout(READ_TIMEOUT_S):
        while chunk := await request.content.read(READ_CHUNK):
            body += chunk
            if len(body) > limit:
                raise InboundReportError(Verdict.TOO_LARGE, f"body over {limit} bytes")
    return bytes(body)
