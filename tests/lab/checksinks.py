"""SMTP sinks on the host loopback for ``tlspolicy check`` (the Postfix lab's run in a namespace).

Every host of ``smtpcases.SINKS`` and ``checkcases.CHECK_SINKS`` listens at its lab address
(127.0.0.x, from the lab DNS) on one free port shared by all, which ``check --port`` is then
given; nothing listens outside 127.0.0.0/8 (a host's AAAA, such as ``mx.chk-v6.lab``'s ::1,
gets no listener: a refused IPv6 address next to a good IPv4 one). Certificates are made
from the catalogue's keys (so the TLSA records match), per ``SinkKind`` as in ``mxsinks``,
and with the lifetimes ``CheckSink`` asks for. One asyncio loop in a thread serves them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.lab.checkcases import CHECK_SINKS
from tests.lab.mxsinks import leaf_certificate
from tests.lab.scenario import Lab
from tests.lab.smtpcases import SINKS, WRONG_MX_NAME, SinkKind

BIND_ATTEMPTS = 5
LISTEN_NETWORK = ipaddress.ip_network("127.0.0.0/8")
START_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Spec:
    """How one sink presents itself: ``issuer`` "lab", "untrusted" or "self"."""

    host: str
    name: str
    issuer: str = "lab"
    days: int = 30  # validity left; negative: expired that many days ago
    starttls: bool = True
    chain: bool = False  # send the issuing CA's certificate after the leaf


def specs() -> list[Spec]:
    out: list[Spec] = []
    for sink in SINKS:
        name = {SinkKind.WRONG_NAME: WRONG_MX_NAME, SinkKind.ROGUE: "mx.rpt-stspattern.lab"}.get(
            sink.kind, sink.host
        )
        issuer = {SinkKind.UNTRUSTED: "untrusted", SinkKind.SELF_SIGNED: "self"}.get(
            sink.kind, "lab"
        )
        days = -1 if sink.kind is SinkKind.EXPIRED else 30
        starttls = sink.kind is not SinkKind.NO_STARTTLS
        out.append(Spec(sink.host, name, issuer, days, starttls))
    out += [Spec(s.host, s.host, "lab", s.days, chain=s.chain) for s in CHECK_SINKS]
    return out


def certificate(key_pem: bytes, name: str, issuer: trustme.CA | None, days: int) -> bytes:
    """A PEM leaf for ``name`` over ``key_pem`` that ends ``days`` days from now."""
    now = datetime.datetime.now(datetime.UTC)
    end = now + datetime.timedelta(days=days, hours=1)
    start = min(now, end) - datetime.timedelta(days=30)
    return leaf_certificate(key_pem, name, issuer=issuer, not_before=start, not_after=end)


class _Handler:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 2.0.0 Ok: dropped by the check sink"


class CheckSinks:
    """Start with ``start()``; ``port`` is the shared port once started."""

    def __init__(self, workdir: Path, lab: Lab) -> None:
        self.dir = workdir
        self.lab = lab
        self.port = 0
        self.addresses: dict[str, list[str]] = {}  # host -> its A (and AAAA) addresses
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="chk-sinks", daemon=True
        )
        self._servers: list[asyncio.AbstractServer] = []

    def _context(self, spec: Spec) -> ssl.SSLContext | None:
        if not spec.starttls:
            return None
        https = self.lab.https
        issuer = {"lab": https.ca, "untrusted": https.untrusted_ca}.get(spec.issuer)
        key = self.lab.catalogue.mx_keys[spec.host]
        cert_file, key_file = self.dir / f"{spec.host}.crt", self.dir / f"{spec.host}.key"
        pem = certificate(key, spec.name, issuer, spec.days)
        if spec.chain and issuer is not None:
            pem += issuer.cert_pem.bytes()
        cert_file.write_bytes(pem)
        key_file.write_bytes(key)
        key_file.chmod(0o600)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_file, key_file)
        return ctx

    def _bind(self) -> list[socket.socket]:
        """One listening socket per sink, all on one port (retried when a port is taken)."""
        last: OSError | None = None
        for _ in range(BIND_ATTEMPTS):
            sockets: list[socket.socket] = []
            port = 0
            try:
                for address in (a for addresses in self.addresses.values() for a in addresses):
                    if ipaddress.ip_address(address) not in LISTEN_NETWORK:
                        raise RuntimeError(f"refusing to listen outside 127.0.0.0/8: {address}")
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    sockets.append(sock)
                    sock.bind((address, port))
                    sock.listen(64)
                    port = sock.getsockname()[1]
            except OSError as exc:
                last = exc
                for sock in sockets:
                    sock.close()
                continue
            self.port = port
            return sockets
        raise RuntimeError(f"no common free port for the check sinks: {last}")

    def start(self) -> None:
        all_specs = specs()
        for spec in all_specs:
            found = self.lab.dns.get(spec.host, "A")
            if found is None:
                raise KeyError(f"no A record for {spec.host}")
            self.addresses[spec.host] = found[1][:1]  # IPv4 only: we listen in 127.0.0.0/8
        sockets = self._bind()
        self._thread.start()
        listening = iter(sockets)
        for spec in all_specs:
            ctx = self._context(spec)

            def factory(host: str = spec.host, c: ssl.SSLContext | None = ctx) -> SMTP:
                return SMTP(_Handler(), hostname=host, tls_context=c, timeout=30)

            for _ in self.addresses[spec.host]:
                coro = self._loop.create_server(factory, sock=next(listening))
                future = asyncio.run_coroutine_threadsafe(coro, self._loop)
                self._servers.append(future.result(START_TIMEOUT_S))

    def stop(self) -> None:
        async def close(servers: list[asyncio.AbstractServer]) -> None:
            for server in servers:
                server.close()
            for server in servers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 2.0)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(self._servers), self._loop).result(5.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
        self._loop.close()
