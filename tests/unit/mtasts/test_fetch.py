"""PolicyFetcher against a local aiohttp HTTPS server with trustme certificates."""

from __future__ import annotations

import asyncio
import base64
import gzip
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from tests.fakes import FakeDns
from tlspolicy.dnsstub.data import AddressRecord, DnsAnswer
from tlspolicy.dnsstub.trace import Trace, recording
from tlspolicy.errors import ConfigError, FetchError
from tlspolicy.mtasts.fetch import PolicyFetcher, proxy_for
from tlspolicy.mtasts.response import MAX_POLICY_BYTES
from tlspolicy.mtasts.response import check_media_type as _check_media_type

DOMAIN = "example.test"
HOST = "mta-sts.example.test"
POLICY = "version: STSv1\nmode: enforce\nmx: mail.example.test\nmax_age: 86400\n"
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Server:
    port: int
    requests: list[web.Request] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)


Serve = Callable[..., Awaitable[Server]]
MakeFetcher = Callable[..., "PolicyFetcher"]


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
async def serve(
    ca: trustme.CA,
) -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    runners: list[web.AppRunner] = []

    async def start(
        handler: Handler,
        *,
        name: str = HOST,
        issuer: trustme.CA | None = None,
        tls: bool = True,
    ) -> Server:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        (issuer or ca).issue_cert(name).configure_cert(context)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = Server(port=sock.getsockname()[1])
        context.sni_callback = lambda _obj, sni, _ctx: server.sni.append(sni)

        async def record(request: web.Request) -> web.StreamResponse:
            server.requests.append(request)
            return await handler(request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        runners.append(runner)
        await web.SockSite(runner, sock, ssl_context=context if tls else None).start()
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def dns() -> FakeDns:
    fake = FakeDns()
    fake.set(HOST, "A", [AddressRecord("127.0.0.1")])
    fake.set(HOST, "AAAA", [])
    return fake


@pytest.fixture
async def make_fetcher(dns: FakeDns, ca_file: str) -> AsyncIterator[Callable[..., PolicyFetcher]]:
    fetchers: list[PolicyFetcher] = []

    def make(port: int, **options: object) -> PolicyFetcher:
        settings: dict[str, object] = {
            "dns": dns,
            "ca_file": ca_file,
            "allow_private_addresses": True,
            "timeout": 2.0,
            "connect_port": port,
        }
        settings.update(options)
        fetcher = PolicyFetcher(**settings)  # type: ignore[arg-type]
        fetchers.append(fetcher)
        return fetcher

    yield make
    for fetcher in fetchers:
        await fetcher.aclose()


def _text(body: str | bytes, content_type: str = "text/plain", **kw: object) -> Handler:
    async def handler(_request: web.Request) -> web.StreamResponse:
        data = body.encode() if isinstance(body, str) else body
        return web.Response(body=data, headers={"Content-Type": content_type}, **kw)  # type: ignore[arg-type]

    return handler


async def test_policy_fetcher_fetches_policy(serve: Serve, make_fetcher: MakeFetcher) -> None:
    server = await serve(_text(POLICY, "text/plain; charset=utf-8"))
    fetcher = make_fetcher(server.port, user_agent="test-agent")
    with recording(Trace()) as trace:
        assert await fetcher.fetch(DOMAIN) == POLICY
    (request,) = server.requests
    assert request.path == "/.well-known/mta-sts.txt"
    assert request.method == "GET"
    assert request.host == HOST  # URL and Host keep port 443; only the connect port differs
    assert request.headers["Cache-Control"] == "no-cache"
    assert request.headers["User-Agent"] == "test-agent"
    assert request.headers["Accept-Encoding"] == "identity"
    assert "Authorization" not in request.headers
    assert server.sni == [HOST]
    https = [event for event in trace.events if event.kind == "https"]
    assert len(https) == 1
    assert https[0].name == f"https://{HOST}/.well-known/mta-sts.txt"
    assert https[0].status == "ok"
    assert https[0].elapsed_ms is not None
    assert ("mta-sts.example.test", "A") in [(e.name, e.detail) for e in trace.events]


async def test_policy_fetcher_one_connection_per_fetch(
    serve: Serve, make_fetcher: MakeFetcher
) -> None:
    server = await serve(_text(POLICY))
    fetcher = make_fetcher(server.port)
    await fetcher.fetch(DOMAIN)
    await fetcher.fetch(DOMAIN)
    assert len(server.requests) == 2
    assert server.sni == [HOST, HOST]  # two TLS handshakes: nothing is kept alive
    assert all(r.headers["Connection"] == "close" for r in server.requests)
    await fetcher.aclose()
    await fetcher.aclose()  # idempotent


async def test_policy_fetcher_accepts_exactly_max_bytes(
    serve: Serve, make_fetcher: MakeFetcher
) -> None:
    server = await serve(_text("a" * MAX_POLICY_BYTES))
    assert len(await make_fetcher(server.port).fetch(DOMAIN)) == MAX_POLICY_BYTES


async def _redirect(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently(location=f"https://{HOST}/elsewhere")


async def _chunked_oversize(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(20):
        await response.write(b"x" * 4096)
    await response.write_eof()
    return response


async def _slow_headers(_request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(5)
    return web.Response(text=POLICY)


async def _slow_body(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.content_length = len(POLICY)
    await response.prepare(request)
    await response.write(POLICY[:10].encode())
    await asyncio.sleep(5)
    await response.write(POLICY[10:].encode())
    return response


async def _gzip(_request: web.Request) -> web.StreamResponse:
    return web.Response(
        body=gzip.compress(POLICY.encode()),
        headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"},
    )


@pytest.mark.parametrize(
    ("handler", "kind"),
    [
        pytest.param(_text("not here", status=404), "status", id="404"),
        pytest.param(_text("oops", status=500), "status", id="500"),
        pytest.param(_text(POLICY, status=204), "status", id="204"),
        pytest.param(_redirect, "redirect", id="301"),
        pytest.param(_text(POLICY, "text/html"), "content-type", id="text-html"),
        pytest.param(_text(POLICY, "application/octet-stream"), "content-type", id="octet"),
        pytest.param(_text(POLICY, "text/plain; charset=iso-8859-1"), "content-type", id="latin1"),
        pytest.param(_text("a" * (MAX_POLICY_BYTES + 1)), "too-large", id="static-oversize"),
        pytest.param(_chunked_oversize, "too-large", id="chunked-oversize"),
        pytest.param(_text(b"mode: caf\xe9\n"), "encoding", id="not-utf8"),
        pytest.param(_gzip, "encoding", id="content-encoding-gzip"),
    ],
)
async def test_policy_fetcher_rejects_response(
    serve: Serve, make_fetcher: MakeFetcher, handler: Handler, kind: str
) -> None:
    server = await serve(handler)
    with recording(Trace()) as trace, pytest.raises(FetchError) as info:
        await make_fetcher(server.port).fetch(DOMAIN)
    assert info.value.kind == kind
    assert len(server.requests) == 1  # a redirect is not followed
    (event,) = [e for e in trace.events if e.kind == "https"]
    assert event.status == "error" and kind in event.detail


@pytest.mark.parametrize(
    "handler",
    [pytest.param(_slow_headers, id="slow-headers"), pytest.param(_slow_body, id="slow-body")],
)
async def test_policy_fetcher_deadline(
    serve: Serve, make_fetcher: MakeFetcher, handler: Handler
) -> None:
    server = await serve(handler)
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        await make_fetcher(server.port, timeout=0.5).fetch(DOMAIN)
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 2.0


async def test_policy_fetcher_deadline_covers_dns(
    serve: Serve, make_fetcher: MakeFetcher, dns: FakeDns
) -> None:
    class SlowDns(FakeDns):
        async def query(self, name: str, rdtype: str) -> DnsAnswer:
            await asyncio.sleep(5)
            return await super().query(name, rdtype)

    server = await serve(_text(POLICY))
    slow = SlowDns(answers=dns.answers)
    with pytest.raises(FetchError) as info:
        await make_fetcher(server.port, dns=slow, timeout=0.3).fetch(DOMAIN)
    assert info.value.kind == "timeout"


@pytest.mark.parametrize(
    ("options", "kind"),
    [
        pytest.param({"issuer": trustme.CA()}, "certificate", id="untrusted-ca"),
        pytest.param({"name": "other.example.test"}, "certificate", id="wrong-name"),
        pytest.param({"name": "*.test"}, "certificate", id="wildcard-too-broad"),
        pytest.param({"tls": False}, "tls", id="plain-http-server"),
    ],
)
async def test_policy_fetcher_tls_failures(
    serve: Serve, make_fetcher: MakeFetcher, options: dict[str, Any], kind: str
) -> None:
    server = await serve(_text(POLICY), **options)
    with pytest.raises(FetchError) as info:
        await make_fetcher(server.port).fetch(DOMAIN)
    assert info.value.kind == kind
    assert server.requests == []


@pytest.fixture
def tls11_port(ca: trustme.CA, tmp_path: Path) -> Iterator[int]:
    """An ``openssl s_server`` that speaks TLS 1.1 only (in its own process, because the
    system OpenSSL configuration forbids TLS 1.1 in this one)."""
    pem = tmp_path / "server.pem"
    ca.issue_cert(HOST).private_key_and_cert_chain_pem.write_to_path(str(pem))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    command = ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(pem)]
    command += ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-www", "-quiet"]
    process = subprocess.Popen(
        command,
        env={"PATH": "/usr/bin:/bin", "OPENSSL_CONF": "/dev/null"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("openssl s_server did not start")
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=5)


async def test_policy_fetcher_refuses_tls_below_1_2(
    tls11_port: int, make_fetcher: MakeFetcher
) -> None:
    with pytest.raises(FetchError) as info:
        await make_fetcher(tls11_port).fetch(DOMAIN)
    assert info.value.kind == "tls"
    assert "PROTOCOL_VERSION" in info.value.detail.upper()


async def test_policy_fetcher_wildcard_certificate_accepted(
    serve: Serve, make_fetcher: MakeFetcher
) -> None:
    server = await serve(_text(POLICY), name="*.example.test")
    assert await make_fetcher(server.port).fetch(DOMAIN) == POLICY


async def test_policy_fetcher_refuses_private_address(
    serve: Serve, make_fetcher: MakeFetcher
) -> None:
    server = await serve(_text(POLICY))
    with pytest.raises(FetchError) as info:
        await make_fetcher(server.port, allow_private_addresses=False).fetch(DOMAIN)
    assert info.value.kind == "private-address"
    assert "127.0.0.1" in info.value.detail
    assert "refused to connect to a private address" in info.value.detail
    assert server.requests == []


@pytest.mark.parametrize(
    ("setup", "kind"),
    [
        pytest.param(lambda d: d.answers.clear(), "dns", id="nxdomain"),
        pytest.param(lambda d: d.set(HOST, "A", []), "dns", id="no-addresses"),
        pytest.param(lambda d: (d.fail(HOST, "A"), d.fail(HOST, "AAAA")), "dns", id="servfail"),
    ],
)
async def test_policy_fetcher_dns_failures(
    serve: Serve,
    make_fetcher: MakeFetcher,
    dns: FakeDns,
    setup: Callable[[FakeDns], object],
    kind: str,
) -> None:
    server = await serve(_text(POLICY))
    setup(dns)
    with pytest.raises(FetchError) as info:
        await make_fetcher(server.port).fetch(DOMAIN)
    assert info.value.kind == kind


async def test_policy_fetcher_one_family_failing_is_enough(
    serve: Serve, make_fetcher: MakeFetcher, dns: FakeDns
) -> None:
    server = await serve(_text(POLICY))
    dns.fail(HOST, "AAAA", "timeout")
    assert await make_fetcher(server.port).fetch(DOMAIN) == POLICY


async def test_policy_fetcher_connection_refused(make_fetcher: MakeFetcher) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(FetchError) as info:
        await make_fetcher(port).fetch(DOMAIN)
    assert info.value.kind == "connect"


@pytest.mark.parametrize("domain", ["", "-bad.test", "a..test", "10.0.0.1", "b\u00fccher.test"])
async def test_policy_fetcher_refuses_invalid_domain(
    make_fetcher: MakeFetcher, dns: FakeDns, domain: str
) -> None:
    with pytest.raises(FetchError) as info:
        await make_fetcher(1).fetch(domain)
    assert info.value.kind == "other"
    assert dns.queries == []


def test_policy_fetcher_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ca_file"):
        PolicyFetcher(
            dns=FakeDns(),
            ca_file=str(tmp_path / "missing.pem"),
            allow_private_addresses=False,
            timeout=10,
        )
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="ca_file"):
        PolicyFetcher(
            dns=FakeDns(),
            ca_file=str(tmp_path / "junk.pem"),
            allow_private_addresses=False,
            timeout=10,
        )
    for timeout in (0, 61):
        with pytest.raises(ConfigError, match="timeout"):
            PolicyFetcher(
                dns=FakeDns(), ca_file=None, allow_private_addresses=False, timeout=timeout
            )


# --- proxies -----------------------------------------------------------------------------


@dataclass
class ConnectProxy:
    """A minimal HTTP CONNECT proxy that sends every tunnel to 127.0.0.1:``target_port``."""

    target_port: int
    requests: list[str] = field(default_factory=list)
    heads: list[bytes] = field(default_factory=list)
    answer: bytes = b"HTTP/1.1 200 Connection established\r\n\r\n"
    port: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head.split(b"\r\n", 1)[0].decode())
        self.heads.append(head)
        if b" 200 " not in self.answer.split(b"\r\n", 1)[0]:
            writer.write(self.answer)
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        writer.write(self.answer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def proxy(serve: Serve) -> AsyncIterator[tuple[ConnectProxy, Server]]:
    server = await serve(_text(POLICY))
    connect_proxy = ConnectProxy(server.port)
    await connect_proxy.start()
    yield connect_proxy, server
    await connect_proxy.stop()


async def test_policy_fetcher_uses_https_proxy(
    proxy: tuple[ConnectProxy, Server],
    make_fetcher: MakeFetcher,
    dns: FakeDns,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connect_proxy, server = proxy
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{connect_proxy.port}")
    # The proxy resolves the policy host itself, so the address guard does not apply.
    fetcher = make_fetcher(server.port, allow_private_addresses=False)
    assert await fetcher.fetch(DOMAIN) == POLICY
    assert connect_proxy.requests == [f"CONNECT {HOST}:443 HTTP/1.1"]
    assert dns.queries == []
    assert server.sni == [HOST]


async def test_policy_fetcher_sends_proxy_credentials_from_the_url(
    proxy: tuple[ConnectProxy, Server], make_fetcher: MakeFetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect_proxy, server = proxy
    monkeypatch.setenv("HTTPS_PROXY", f"http://user%40x:p%3Ass@127.0.0.1:{connect_proxy.port}")
    assert await make_fetcher(server.port).fetch(DOMAIN) == POLICY
    secret = base64.b64encode(b"user@x:p:ss").decode()
    assert f"Proxy-Authorization: Basic {secret}".encode() in connect_proxy.heads[0]
    assert "Authorization" not in server.requests[0].headers  # nothing reaches the host


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", id="407"),
        pytest.param(b"HTTP/1.1 200 OK\r\n\r\nearly", id="data-before-tls"),
        pytest.param(b"garbage\r\n\r\n", id="garbage"),
    ],
)
async def test_policy_fetcher_refused_by_proxy(
    proxy: tuple[ConnectProxy, Server],
    make_fetcher: MakeFetcher,
    monkeypatch: pytest.MonkeyPatch,
    answer: bytes,
) -> None:
    connect_proxy, server = proxy
    connect_proxy.answer = answer
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{connect_proxy.port}")
    with pytest.raises(FetchError) as info:
        await make_fetcher(server.port).fetch(DOMAIN)
    assert info.value.kind == "proxy"
    assert server.requests == []


async def test_policy_fetcher_deadline_covers_a_silent_proxy(
    make_fetcher: MakeFetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # reads the CONNECT and never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    with pytest.raises(FetchError) as info:
        await make_fetcher(1, timeout=0.3).fetch(DOMAIN)
    assert info.value.kind == "timeout"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize(
    "no_proxy", ["example.test", ".example.test", HOST, "other.test, test", "*"]
)
async def test_policy_fetcher_honours_no_proxy(
    proxy: tuple[ConnectProxy, Server],
    make_fetcher: MakeFetcher,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
) -> None:
    connect_proxy, server = proxy
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{connect_proxy.port}")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert await make_fetcher(server.port).fetch(DOMAIN) == POLICY
    assert connect_proxy.requests == []
    assert len(server.requests) == 1


async def test_policy_fetcher_unreachable_proxy(
    serve: Serve, make_fetcher: MakeFetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await serve(_text(POLICY))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    closed_port = sock.getsockname()[1]
    sock.close()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port}")
    with pytest.raises(FetchError) as info:
        await make_fetcher(server.port).fetch(DOMAIN)
    assert info.value.kind == "proxy"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, None, id="none"),
        pytest.param({"HTTPS_PROXY": "http://p:3128"}, "http://p:3128", id="upper"),
        pytest.param({"https_proxy": "p:3128"}, "http://p:3128", id="lower-no-scheme"),
        pytest.param({"HTTP_PROXY": "http://p:3128"}, None, id="http-proxy-not-used"),
        pytest.param({"HTTPS_PROXY": "http://p", "NO_PROXY": "test"}, None, id="no-proxy-tld"),
        pytest.param({"HTTPS_PROXY": "http://p", "no_proxy": "other"}, "http://p", id="no-other"),
        pytest.param({"HTTPS_PROXY": "http://p", "NO_PROXY": "*"}, None, id="no-proxy-star"),
        pytest.param({"HTTPS_PROXY": "http://p", "https_proxy": ""}, None, id="empty-lower-wins"),
        pytest.param(
            {"https_proxy": "http://l", "HTTPS_PROXY": "http://u"}, "http://l", id="lower"
        ),
    ],
)
def test_proxy_for(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str) -> None:
    for name in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert proxy_for(HOST) == expected
    with_urllib = urllib.request.getproxies_environment().get("https")
    if not with_urllib or urllib.request.proxy_bypass(HOST):
        with_urllib = None
    assert expected in (with_urllib, f"http://{with_urllib}")  # the same reading as urllib


# --- media type ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "text/plain",
        "TEXT/Plain",
        "text/plain; charset=utf-8",
        "text/plain;charset=UTF-8",
        'text/plain; charset="us-ascii"',
        "text/plain; format=flowed; charset=utf-8",
        " text/plain ; foo=bar",
    ],
)
def test__check_media_type_accepts(value: str) -> None:
    _check_media_type(value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "text/html",
        "text/plain-x",
        "text/plainx; charset=utf-8",
        "text/plain; charset=iso-8859-1",
        "text/plain; charset=utf-16",
        "application/json",
    ],
)
def test__check_media_type_rejects(value: str | None) -> None:
    with pytest.raises(FetchError) as info:
        _check_media_type(value)
    assert info.value.kind == "content-type"


# --- responses the aiohttp test server cannot send ----------------------------------------


@pytest.fixture
async def raw_server(ca: trustme.CA) -> AsyncIterator[Callable[[bytes], Awaitable[int]]]:
    """A TLS server that reads one request head and sends ``reply`` verbatim, then closes."""
    servers: list[asyncio.Server] = []

    async def start(reply: bytes) -> int:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(HOST).configure_cert(context)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(reply)
                await writer.drain()
                writer.close()
                await writer.wait_closed()
            except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
                pass

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"


async def test_policy_fetcher_reads_a_body_ended_by_close(
    raw_server: Callable[[bytes], Awaitable[int]], make_fetcher: MakeFetcher
) -> None:
    port = await raw_server(HEAD + b"\r\n" + POLICY.encode())
    assert await make_fetcher(port).fetch(DOMAIN) == POLICY


@pytest.mark.parametrize(
    ("reply", "kind", "words"),
    [
        pytest.param(HEAD + b"Content-Length: 500\r\n\r\nversion: STSv1\n", "other", "complete",
                     id="truncated-body"),
        pytest.param(b"SMTP/1.0 OK\r\n\r\n", "other", "malformed", id="not-http"),
        pytest.param(HEAD + b"X-Pad: " + b"a" * 100_000 + b"\r\n\r\n", "other", "malformed",
                     id="huge-head"),
        pytest.param(HEAD + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabc", "other",
                     "malformed", id="two-lengths"),
        pytest.param(b"", "connect", "closed", id="closed-at-once"),
    ],
)  # fmt: skip
async def test_policy_fetcher_rejects_broken_http(
    raw_server: Callable[[bytes], Awaitable[int]],
    make_fetcher: MakeFetcher,
    reply: bytes,
    kind: str,
    words: str,
) -> None:
    port = await raw_server(reply)
    with pytest.raises(FetchError) as info:
        await make_fetcher(port).fetch(DOMAIN)
    assert info.value.kind == kind
    assert words in info.value.detail
