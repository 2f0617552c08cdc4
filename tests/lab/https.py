"""The lab's MTA-STS policy hosts: one real TLS server on <address>:443 for every host name.

An MTA-STS client fetches ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` without a port,
so the server must listen on 443 (we are root). All ``mta-sts.*`` names of the lab resolve to
``HttpsLab.address`` (127.88.0.1, or the next free 127.88.0.x when another session holds it).

Rules kept here:
* The certificate is chosen per SNI name (``sni_callback``) from the host's ``Behavior.cert``:
  issued by the lab CA (``ca_file``), by a second CA nobody trusts, for another name, or expired.
* The response is chosen per ``Host`` header (SNI when there is none); unknown hosts and paths
  other than ``POLICY_PATH`` get 404, methods other than GET 405. Every request is recorded
  before the response starts; every response closes the connection (no keep-alive).
* Slow responses wait on the server's stop event, so ``stop`` never hangs on a 30 s trickle.
"""

from __future__ import annotations

import contextlib
import datetime
import http
import socket
import socketserver
import ssl
import threading
import time
import weakref
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import trustme

POLICY_PATH = "/.well-known/mta-sts.txt"  # RFC 8461 §3.3
HTTPS_PORT = 443  # RFC 8461 §3.3: the policy URL has no port
ADDRESS_CANDIDATES = tuple(f"127.88.0.{n}" for n in range(1, 21))
WRONG_CERT_NAME = "mta-sts.wrong-name.lab"  # what CertVariant.WRONG_NAME certificates name
CONNECTION_TIMEOUT_S = 60.0  # a stuck client connection is dropped after this
BODY_STEPS = 10  # a slow body is sent in this many pieces, spread over Behavior.body_delay
CHUNK_BYTES = 4096  # chunk size for Transfer-Encoding: chunked


class CertVariant(StrEnum):
    GOOD = "good"  # issued by the lab CA for the requested name
    UNTRUSTED = "untrusted"  # right name, issued by a CA not in ca_file
    WRONG_NAME = "wrong-name"  # lab CA, but for WRONG_CERT_NAME
    EXPIRED = "expired"  # lab CA, right name, notAfter yesterday


@dataclass(frozen=True, slots=True)
class Behavior:
    """How one policy host answers ``GET POLICY_PATH``.

    ``head_delay`` sleeps before the status line; ``body_delay`` spreads the body over that many
    seconds (first piece at once). ``chunked`` sends Transfer-Encoding: chunked without
    Content-Length; ``content_length`` false omits the header (body ends at connection close).
    """

    body: bytes | str = b""
    status: int = 200
    content_type: str | None = "text/plain"
    headers: tuple[tuple[str, str], ...] = ()
    cert: CertVariant = CertVariant.GOOD
    head_delay: float = 0.0
    body_delay: float = 0.0
    chunked: bool = False
    content_length: bool = True

    @property
    def body_bytes(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else self.body


def redirect(location: str, *, status: int = 301) -> Behavior:
    """A redirect to ``location`` (RFC 8461 §3.3: clients must not follow it)."""
    return Behavior(body=b"moved\n", status=status, headers=(("Location", location),))


@dataclass(frozen=True, slots=True)
class HttpsRequest:
    """One request as the server saw it; ``host`` is the Host header without port."""

    host: str
    sni: str | None
    method: str
    path: str
    at: float = field(default_factory=time.time)
    monotonic: float = field(default_factory=time.monotonic)


def _host_key(name: str | None) -> str:
    return (name or "").strip().lower().rstrip(".")


def _strip_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    return host if sep and port.isdigit() else value


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    # socketserver's default backlog of 5 drops connections when many policy fetches arrive
    # at once (the benchmark's cold passes); dropped SYNs are retried only after 1 s.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], lab: HttpsLab) -> None:
        self.lab = lab
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that reject our certificate or hang up are part of the tests: stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        lab = self.server.lab
        raw = self.request
        assert isinstance(raw, socket.socket)
        raw.settimeout(CONNECTION_TIMEOUT_S)
        tls = lab.server_context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        # The TLS socket took over the connection: socketserver closes only ``raw`` (now
        # detached), so this handler closes ``tls`` itself, also when the handshake fails.
        try:
            tls.do_handshake()
        except BaseException:
            tls.close()
            raise
        self.sni = lab.sni_of(tls)
        self.request = tls
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.request.close()

    def log_message(self, format: str, *args: object) -> None:
        """Requests are recorded in HttpsLab.requests instead."""

    def do_GET(self) -> None:
        self._respond("GET")

    def do_HEAD(self) -> None:
        self._respond("HEAD")

    def do_POST(self) -> None:
        self._respond("POST")

    def _respond(self, method: str) -> None:
        lab = self.server.lab
        host = _host_key(_strip_port(self.headers.get("Host") or "") or self.sni)
        path = self.path.split("?", 1)[0]
        lab.record(HttpsRequest(host=host, sni=self.sni, method=method, path=path))
        self.close_connection = True
        behavior = lab.get(host)
        if behavior is None or path != POLICY_PATH:
            behavior = Behavior(body=b"not found\n", status=404)
        elif method != "GET":
            behavior = Behavior(body=b"method not allowed\n", status=405)
        with contextlib.suppress(OSError):
            self._send(behavior, lab.stopping)

    def _send(self, b: Behavior, stopping: threading.Event) -> None:
        if b.head_delay and stopping.wait(b.head_delay):
            return
        body = b.body_bytes
        try:
            reason = http.HTTPStatus(b.status).phrase
        except ValueError:
            reason = "Unknown"
        head = [f"HTTP/1.1 {b.status} {reason}", "Connection: close"]
        if b.content_type is not None:
            head.append(f"Content-Type: {b.content_type}")
        if b.chunked:
            head.append("Transfer-Encoding: chunked")
        elif b.content_length:
            head.append(f"Content-Length: {len(body)}")
        head.extend(f"{k}: {v}" for k, v in b.headers)
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if b.chunked:
            pieces = [body[i : i + CHUNK_BYTES] for i in range(0, len(body), CHUNK_BYTES)]
            frames = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]
        else:
            frames = [body]
        if b.body_delay:
            wire = b"".join(frames)
            step = max(1, -(-len(wire) // BODY_STEPS))
            frames = [wire[i : i + step] for i in range(0, len(wire), step)]
        for index, frame in enumerate(frames):
            if index and b.body_delay and stopping.wait(b.body_delay / len(frames)):
                return
            self.wfile.write(frame)
            self.wfile.flush()


class HttpsLab:
    """The policy host server; ``set(host, Behavior(...))`` changes it at runtime."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.ca = trustme.CA(organization_name="tlspolicy lab CA")
        self.untrusted_ca = trustme.CA(organization_name="tlspolicy untrusted CA")
        self.ca_file = workdir / "lab-ca.pem"
        self.untrusted_ca_file = workdir / "untrusted-ca.pem"
        self.address = ""
        self.port = HTTPS_PORT
        self.stopping = threading.Event()
        self.requests: list[HttpsRequest] = []
        self.sni_names: weakref.WeakKeyDictionary[ssl.SSLSocket, str] = weakref.WeakKeyDictionary()
        self._behaviors: dict[str, Behavior] = {}
        self._initial: dict[str, Behavior] = {}
        self._contexts: dict[tuple[CertVariant, str], ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.server_context = self._context(CertVariant.GOOD, "lab-default.invalid")
        self.server_context.sni_callback = self._on_sni

    # --- certificates ------------------------------------------------------------------

    def _context(self, variant: CertVariant, host: str) -> ssl.SSLContext:
        with self._lock:
            found = self._contexts.get((variant, host))
            if found is not None:
                return found
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            now = datetime.datetime.now(datetime.UTC)
            if variant is CertVariant.UNTRUSTED:
                cert = self.untrusted_ca.issue_cert(host)
            elif variant is CertVariant.WRONG_NAME:
                cert = self.ca.issue_cert(WRONG_CERT_NAME)
            elif variant is CertVariant.EXPIRED:
                cert = self.ca.issue_cert(
                    host,
                    not_before=now - datetime.timedelta(days=30),
                    not_after=now - datetime.timedelta(days=1),
                )
            else:
                cert = self.ca.issue_cert(host)
            cert.configure_cert(ctx)
            self._contexts[(variant, host)] = ctx
            return ctx

    def _on_sni(self, sock: ssl.SSLSocket | ssl.SSLObject, name: str | None, _: object) -> None:
        if name is None or not isinstance(sock, ssl.SSLSocket):
            return
        host = _host_key(name)
        with self._lock:
            self.sni_names[sock] = host
        behavior = self.get(host) or Behavior()
        sock.context = self._context(behavior.cert, host)

    def sni_of(self, sock: ssl.SSLSocket) -> str | None:
        """The SNI name a server-side socket's client sent, if any."""
        with self._lock:
            return self.sni_names.get(sock)

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only the lab CA (what the daemon gets as ca_file)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    # --- behaviours and requests -------------------------------------------------------

    def set(self, host: str, behavior: Behavior) -> None:
        """Serve ``behavior`` for ``host`` (e.g. ``mta-sts.sts-good.lab``) from now on."""
        with self._lock:
            self._behaviors[_host_key(host)] = behavior

    def delete(self, host: str) -> None:
        """Make ``host`` answer 404."""
        with self._lock:
            self._behaviors.pop(_host_key(host), None)

    def get(self, host: str) -> Behavior | None:
        with self._lock:
            return self._behaviors.get(_host_key(host))

    def load(self, behaviors: dict[str, Behavior]) -> None:
        """Install the catalogue; ``reset`` returns to it."""
        with self._lock:
            self._initial = {_host_key(h): b for h, b in behaviors.items()}
            self._behaviors = dict(self._initial)

    def reset(self) -> None:
        """Back to the catalogue behaviours, with the request log cleared."""
        with self._lock:
            self._behaviors = dict(self._initial)
            self.requests.clear()

    def record(self, request: HttpsRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def requests_for(self, host: str, path: str = POLICY_PATH) -> list[HttpsRequest]:
        """Requests for ``host`` and ``path`` so far, oldest first."""
        key = _host_key(host)
        with self._lock:
            return [r for r in self.requests if r.host == key and r.path == path]

    def count(self, host: str, path: str = POLICY_PATH) -> int:
        """How many times ``host`` was asked for ``path`` (default: the policy)."""
        return len(self.requests_for(host, path))

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Write the CA files and listen on the first free candidate address, port 443."""
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.untrusted_ca.cert_pem.write_to_path(str(self.untrusted_ca_file))
        last: OSError | None = None
        for address in ADDRESS_CANDIDATES:
            try:
                self._server = _Server((address, self.port), self)
            except OSError as exc:  # EADDRINUSE: another lab session holds this address
                last = exc
                continue
            self.address = address
            break
        else:
            raise RuntimeError(f"no 127.88.0.x address free on port {self.port}: {last}")
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(2.0)
