"""A hostile policy host on loopback (issue 27): it costs one fetch, never the event loop.

The host is a TLS server in a thread, so its own work does not run on the loop under
test; a ticker (``tests.looplag``) records the loop's worst stall meanwhile.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohappyeyeballs
import pytest
import trustme

from tests import looplag
from tests.fakes import FakeDns
from tlspolicy.dnsstub.data import AddressRecord
from tlspolicy.errors import FetchError
from tlspolicy.mtasts.fetch import PolicyFetcher

DOMAIN = "example.test"
HOST = "mta-sts.example.test"
POLICY = b"version: STSv1\nmode: enforce\nmx: mail.example.test\nmax_age: 86400\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
FINAL = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
    len(POLICY),
    POLICY,
)

# What the host sends after the request head: ``head`` once, then ``repeat`` until the
# client goes away; with ``repeat`` empty, it closes after ``head``, and with ``HOLD`` it
# keeps the connection open without reading or sending (a peer that never answers the
# client's TLS close_notify).
Reply = tuple[bytes, bytes]
HOLD = b"hold"


class HostileHost:
    """One TLS listener on 127.0.0.1, a thread per connection."""

    def __init__(self, ca: trustme.CA, reply: Reply) -> None:
        self.reply = reply
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(HOST).configure_cert(self.context)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.ended: list[BaseException | None] = []  # how each connection's sending ended
        self.threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket) -> None:
        ended: BaseException | None = None
        try:
            with raw, self.context.wrap_socket(raw, server_side=True) as tls:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                head, repeat = self.reply
                tls.sendall(head)
                if repeat == HOLD:
                    self.stop.wait()
                while repeat and not self.stop.is_set():
                    tls.sendall(repeat)
        except OSError as exc:  # ssl.SSLError included
            ended = exc
        finally:
            self.ended.append(ended)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for thread in self.threads:
            thread.join()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def host(ca: trustme.CA) -> Iterator[Callable[[Reply], HostileHost]]:
    made: list[HostileHost] = []

    def start(reply: Reply) -> HostileHost:
        made.append(HostileHost(ca, reply))
        return made[-1]

    yield start
    for server in made:
        server.close()


@pytest.fixture
async def fetcher(ca_file: str) -> AsyncIterator[Callable[[int], PolicyFetcher]]:
    dns = FakeDns()
    dns.set(HOST, "A", [AddressRecord("127.0.0.1")])
    dns.set(HOST, "AAAA", [])
    made: list[PolicyFetcher] = []

    def make(port: int, timeout: float = 2.0) -> PolicyFetcher:
        made.append(
            PolicyFetcher(
                dns=dns,
                ca_file=ca_file,
                allow_private_addresses=True,
                timeout=timeout,
                connect_port=port,
            )
        )
        return made[-1]

    yield make
    for one in made:
        await one.aclose()


@pytest.fixture
def sockets(monkeypatch: pytest.MonkeyPatch) -> list[socket.socket]:
    """The client sockets the fetches connect, to see when they are closed."""
    opened: list[socket.socket] = []
    real = aiohappyeyeballs.start_connection

    async def start_connection(*args: Any, **kwargs: Any) -> socket.socket:
        sock = await real(*args, **kwargs)
        opened.append(sock)
        return sock

    monkeypatch.setattr(aiohappyeyeballs, "start_connection", start_connection)
    return opened


async def test_an_endless_stream_of_100_continue_fails_fast_without_stalling_the_loop(
    host: Callable[[Reply], HostileHost], fetcher: Callable[..., PolicyFetcher]
) -> None:
    """Before issue 27: skipped for the whole 2 s deadline, stalling the loop 276 ms."""
    server = host((b"", CONTINUE * 1000))
    async with looplag.measure() as lag:
        with pytest.raises(FetchError) as info:
            await fetcher(server.port).fetch(DOMAIN)
    assert info.value.kind == "other"
    assert "more than 2 interim (1xx) responses" in info.value.detail
    assert lag.worst < looplag.MAX_LOOP_LAG_S


async def _closed(sockets: list[socket.socket]) -> bool:
    """Whether the fetch's one socket is closed once the loop ran the abort's callback."""
    for _ in range(3):
        await asyncio.sleep(0)
    return [sock.fileno() for sock in sockets] == [-1]


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        pytest.param((CONTINUE * 3, HOLD), "other", id="interim"),
        pytest.param((FINAL.replace(b"%d" % len(POLICY), b"99999"), HOLD), "too-large",
                     id="too-large"),
        pytest.param((b"", HOLD), "timeout", id="timeout"),
    ],
)  # fmt: skip
async def test_an_abandoned_fetch_aborts_its_connection(
    host: Callable[[Reply], HostileHost],
    fetcher: Callable[..., PolicyFetcher],
    sockets: list[socket.socket],
    reply: Reply,
    kind: str,
) -> None:
    """Closed gracefully, the TLS connection would wait up to 30 s for the host's
    close_notify (reading, and decrypting, whatever the host sends meanwhile); aborted,
    its socket is gone at once."""
    server = host(reply)
    with pytest.raises(FetchError) as info:
        await fetcher(server.port, timeout=0.3).fetch(DOMAIN)
    assert info.value.kind == kind
    assert await _closed(sockets)


async def test_two_interim_responses_are_skipped(
    host: Callable[[Reply], HostileHost], fetcher: Callable[..., PolicyFetcher]
) -> None:
    early_hints = b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
    server = host((CONTINUE + early_hints + FINAL, b""))
    assert await fetcher(server.port).fetch(DOMAIN) == POLICY.decode()


async def test_interim_responses_count_against_the_head_limit(
    host: Callable[[Reply], HostileHost], fetcher: Callable[..., PolicyFetcher]
) -> None:
    """Each of these heads is under h11's own limit for one head; together they are not."""
    big = b"HTTP/1.1 100 Continue\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n"
    server = host((big + big + FINAL, b""))
    with pytest.raises(FetchError, match="heads over 16384 bytes"):
        await fetcher(server.port).fetch(DOMAIN)


async def test_an_endless_body_fails_without_stalling_the_loop(
    host: Callable[[Reply], HostileHost], fetcher: Callable[..., PolicyFetcher]
) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = host((chunked, b"1000\r\n" + b"x" * 4096 + b"\r\n"))
    async with looplag.measure() as lag:
        with pytest.raises(FetchError) as info:
            await fetcher(server.port).fetch(DOMAIN)
    assert info.value.kind == "too-large"
    assert lag.worst < looplag.MAX_LOOP_LAG_S
