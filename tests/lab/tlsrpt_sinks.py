"""Where the TLSRPT tests deliver reports: a real SMTP sink and a real HTTPS sink on loopback.

* ``SmtpSink``: aiosmtpd in its own thread on 127.0.0.1; ``fail_with`` makes it answer DATA
  with that SMTP reply (e.g. ``"451 4.3.0 try later"``) until cleared; ``messages`` holds
  what it accepted (envelope recipients and raw bytes), ``rcpts`` every RCPT TO address
  it was given, accepted or not.
* ``HttpsSink``: ``http.server`` over TLS with a certificate for ``SINK_HOST`` and
  127.0.0.1 from its own trustme CA (``ca_file``), like the lab's policy hosts
  (tests/lab/https.py); ``status``
  is the reply status (201 by default); ``requests`` holds every POST (path, headers, body),
  recorded before the answer, whatever the status.
"""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller

from tests.lab.netutil import LOOPBACK, free_port


@dataclass(frozen=True, slots=True)
class Received:
    sender: str
    recipients: tuple[str, ...]
    data: bytes


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self.sink.lock:
            self.sink.rcpts.append(address)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.sink.lock:
            if self.sink.fail_with:
                self.sink.refused += 1
                return self.sink.fail_with
            self.sink.messages.append(
                Received(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 2.0.0 queued"


class SmtpSink:
    def __init__(self) -> None:
        self.port = free_port(udp=False)
        self.lock = threading.Lock()
        self.messages: list[Received] = []
        self.rcpts: list[str] = []
        self.fail_with: str | None = None
        self.refused = 0
        self._controller = Controller(_Handler(self), hostname=LOOPBACK, port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@dataclass(frozen=True, slots=True)
class Posted:
    path: str
    headers: dict[str, str]
    body: bytes


class _HttpsHandler(http.server.BaseHTTPRequestHandler):
    server: _HttpsServer

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        sink = self.server.sink
        with sink.lock:
            sink.requests.append(Posted(self.path, dict(self.headers.items()), body))
            status = sink.status
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"ok")


class _HttpsServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sink: HttpsSink) -> None:
        super().__init__((LOOPBACK, sink.port), _HttpsHandler)
        self.sink = sink
        self.socket = sink.context.wrap_socket(self.socket, server_side=True)


SINK_HOST = "tlsrpt-sink.rpt.lab"  # the sink's name in rua URIs (IP literals are refused)


class HttpsSink:
    """An HTTPS report receiver on loopback, named ``SINK_HOST`` (publish its A record: the
    reporter resolves rua hosts through DNS and needs ``allow_private_addresses`` and the
    sink's port in ``https_ports`` to reach it)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port(udp=False)
        self.lock = threading.Lock()
        self.requests: list[Posted] = []
        self.status = 201
        ca = trustme.CA(organization_name="tlspolicy TLSRPT sink CA")
        self.ca_file = directory / "tlsrpt-sink-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(SINK_HOST, LOOPBACK).configure_cert(self.context)
        self._server = _HttpsServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str = "/tlsrpt") -> str:
        return f"https://{SINK_HOST}:{self.port}{path}"

    def reporter_settings(self) -> dict[str, Any]:
        """The ``tlsrpt:`` keys a reporter needs to post here."""
        return {
            "https_ca_file": str(self.ca_file),
            "https_ports": [self.port],
            "allow_private_addresses": True,
        }

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def running_sinks(directory: Path) -> Iterator[tuple[SmtpSink, HttpsSink]]:
    smtp, https = SmtpSink(), HttpsSink(directory)
    smtp.start()
    https.start()
    try:
        yield smtp, https
    finally:
        https.stop()
        smtp.stop()
