"""Real SMTP servers (aiosmtpd) on port 25 of the lab MX addresses, inside the Postfix namespace.

One asyncio loop in a thread serves every host of ``smtpcases.SINKS``; each listens on a socket
made inside the namespace, at the address the lab DNS gives the host. Certificates are made
here from the catalogue's keys (so the TLSA 3 1 1 records match) and the lab CAs, per
``SinkKind``. Every accepted message is recorded with the host that got it and whether the
session was under TLS; ``wait_for`` waits for one by recipient.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.lab.netns import LabNamespace
from tests.lab.smtpcases import SINKS, WRONG_MX_NAME, Sink, SinkKind

SMTP_PORT = 25
CERT_DAYS = 30
START_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Received:
    host: str  # the sink that accepted it
    mail_from: str
    rcpt_tos: tuple[str, ...]
    tls: bool
    data: bytes


def _load_ca(ca: trustme.CA) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def make_certificate(
    key_pem: bytes, name: str, *, issuer: trustme.CA | None, expired: bool = False
) -> bytes:
    """A PEM leaf for ``name`` over ``key_pem``, issued by ``issuer`` (self-signed if None)."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=CERT_DAYS)
    if expired:
        start, end = now - datetime.timedelta(days=CERT_DAYS), now - datetime.timedelta(days=1)
    return leaf_certificate(key_pem, name, issuer=issuer, not_before=start, not_after=end)


def leaf_certificate(
    key_pem: bytes,
    name: str,
    *,
    issuer: trustme.CA | None,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> bytes:
    """A PEM leaf for ``name`` (CN and DNS SAN) over ``key_pem``, valid between the two
    times, issued by ``issuer`` or self-signed."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    if issuer is None:
        issuer_name, signer = subject, key
    else:
        ca_cert, signer = _load_ca(issuer)
        issuer_name = ca_cert.subject
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(signer, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class _Handler:
    """aiosmtpd hooks: accept everything, remember what came."""

    def __init__(self, sinks: MxSinks, host: str) -> None:
        self.sinks = sinks
        self.host = host

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        data = content if isinstance(content, bytes) else str(content or "").encode()
        self.sinks.record(
            Received(
                host=self.host,
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                tls=session.ssl is not None,
                data=data,
            )
        )
        return "250 2.0.0 Ok: kept by the lab sink"


class MxSinks:
    """Every SMTP sink of ``SINKS``; ``addresses`` maps host name to its 127.0.0.x address."""

    def __init__(
        self,
        workdir: Path,
        ns: LabNamespace,
        addresses: dict[str, str],
        keys: dict[str, bytes],
        *,
        ca: trustme.CA,
        untrusted_ca: trustme.CA,
    ) -> None:
        self.dir = workdir
        self.ns = ns
        self.addresses = addresses
        self.keys = keys
        self.ca = ca
        self.untrusted_ca = untrusted_ca
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mx-sinks", daemon=True)
        self._servers: list[asyncio.AbstractServer] = []

    def _context(self, sink: Sink) -> ssl.SSLContext | None:
        if sink.kind is SinkKind.NO_STARTTLS:
            return None
        key = self.keys[sink.host]
        name = {SinkKind.WRONG_NAME: WRONG_MX_NAME, SinkKind.ROGUE: "mx.rpt-stspattern.lab"}.get(
            sink.kind, sink.host
        )
        issuer = {SinkKind.UNTRUSTED: self.untrusted_ca, SinkKind.SELF_SIGNED: None}.get(
            sink.kind, self.ca
        )
        pem = make_certificate(key, name, issuer=issuer, expired=sink.kind is SinkKind.EXPIRED)
        cert_file, key_file = self.dir / f"{sink.host}.crt", self.dir / f"{sink.host}.key"
        cert_file.write_bytes(pem)
        key_file.write_bytes(key)
        key_file.chmod(0o600)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_file, key_file)
        return ctx

    def start(self) -> None:
        self._thread.start()
        for sink in SINKS:
            sock = self.ns.socket(socket.SOCK_STREAM, (self.addresses[sink.host], SMTP_PORT))
            handler = _Handler(self, sink.host)
            ctx = self._context(sink)

            def factory(h: _Handler = handler, c: ssl.SSLContext | None = ctx) -> SMTP:
                return SMTP(h, hostname=h.host, tls_context=c, timeout=30)

            coro = self._loop.create_server(factory, sock=sock)
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
            self._servers.append(future.result(START_TIMEOUT_S))

    def record(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)

    def for_rcpt(self, rcpt: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if rcpt in r.rcpt_tos]

    def wait_for(self, rcpt: str, *, timeout: float = 20.0) -> Received:
        """The first message for ``rcpt`` (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.for_rcpt(rcpt)
            if found:
                return found[0]
            time.sleep(0.02)
        raise TimeoutError(f"no sink received mail for {rcpt} within {timeout} s")

    def stop(self) -> None:
        async def close(servers: list[Any]) -> None:
            for server in servers:
                server.close()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(self._servers), self._loop).result(5.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
        self._loop.close()
