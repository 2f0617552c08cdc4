"""The HTTP side of the policy fetch: one GET over one fresh TLS connection, framed by h11.

h11 reads and writes HTTP/1.1 without doing I/O; this module does the I/O around it:
addresses (``mtasts.resolver``), the connection (aiohappyeyeballs, RFC 8305), a CONNECT
tunnel through the operator's proxy, TLS with SNI and host-name check, one request with
``Connection: close``, the response. Nothing is pooled or kept alive, so no state outlives
a fetch. A general client (aiohttp) cost about half a millisecond more CPU per cold
MTA-STS domain and 180 ms of import on the first fetch. The rules (no redirects, status
200, ``text/plain``, size cap) are in ``mtasts.fetch``'s docstring; ``mtasts.response``
checks them. Every ssl, h11 and OS exception becomes a ``FetchError`` here, nowhere else.

A hostile policy host must not cost more than its own fetch's deadline, nor stall the
event loop meanwhile:

* at most ``MAX_INTERIM_RESPONSES`` 1xx responses, their octets counted with the final
  head against ``MAX_HEAD_BYTES`` (an endless ``100 Continue`` stream fails at once);
* after each read that returned data the loop gets a turn (``_read``): a read from a
  full buffer does not suspend, so a fast sender would otherwise keep h11 parsing for
  the whole deadline;
* a fetch that gives up (error, deadline, cancellation) aborts its connection at once
  (``transport.abort()``) instead of closing it gracefully: a TLS close waits for the
  peer's close_notify for up to 30 s, decrypting whatever the peer keeps sending.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import urllib.parse

import aiohappyeyeballs
import h11

from tlspolicy.config.defaults import HTTPS_PORT
from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.errors import FetchError
from tlspolicy.mtasts.resolver import connect_addresses
from tlspolicy.mtasts.response import MAX_POLICY_BYTES, READ_CHUNK_BYTES, check_headers

FETCH_CONNECTIONS = 16  # our choice: concurrent fetches across all domains
PROXY_PORT = 80  # an http:// proxy URL without a port
HAPPY_EYEBALLS_DELAY_S = 0.25  # RFC 8305 §5: the recommended connection attempt delay
MAX_HEAD_BYTES = 16 * 1024  # status line and header fields, interim responses included
# 1xx responses skipped before the final one. A GET without ``Expect:`` needs none
# (RFC 9110 §15.2); two leave room for a stray 100 Continue or 103 Early Hints.
MAX_INTERIM_RESPONSES = 2

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpClient:
    """The HTTP client of one ``PolicyFetcher``; ``connect_port`` replaces 443 for the
    policy host (test labs), keeping the Host header and SNI."""

    def __init__(
        self,
        *,
        dns: DnsClient,
        context: ssl.SSLContext,
        allow_private: bool,
        connect_port: int | None,
    ) -> None:
        self._dns = dns
        self._ssl = context
        self._allow_private = allow_private
        self._port = connect_port or HTTPS_PORT
        self._slots = asyncio.Semaphore(FETCH_CONNECTIONS)

    async def get(
        self, host: str, path: str, headers: dict[str, str], proxy: str | None
    ) -> tuple[int, bytes]:
        """GET ``https://host/path``; the status and the body, or ``FetchError``."""
        async with self._slots:
            reader, writer = await self._open(host, proxy)
            try:
                result = await _exchange(reader, writer, host, path, headers)
            except (ssl.SSLError, OSError, h11.ProtocolError) as exc:
                writer.transport.abort()
                raise translate(exc) from exc
            except BaseException:  # FetchError, or the deadline cancelling us
                writer.transport.abort()
                raise
            writer.close()
            return result

    async def close(self) -> None:
        return None  # nothing outlives a fetch

    async def _open(self, host: str, proxy: str | None) -> Stream:
        if proxy is None:
            infos = await connect_addresses(
                self._dns, host, self._port, refuse_private=not self._allow_private
            )
            try:
                return await _open_stream(infos, self._ssl, host)
            except (ssl.SSLError, OSError) as exc:
                raise translate(exc) from exc
        reader, writer = await self._tunnel(proxy, host)
        try:
            await writer.start_tls(self._ssl, server_hostname=host)
        except BaseException as exc:  # also when the deadline cancels us
            writer.transport.abort()
            if isinstance(exc, ssl.SSLError | OSError):
                raise translate(exc) from exc
            raise
        return reader, writer

    async def _tunnel(self, proxy: str, host: str) -> Stream:
        """A CONNECT tunnel to ``host``:443 through the ``http://`` proxy (the proxy resolves
        the policy host, so the address guard cannot apply there)."""
        url = urllib.parse.urlsplit(proxy)
        if url.scheme != "http" or not url.hostname:
            raise FetchError("proxy", f"unsupported proxy {proxy!r} (need http://host:port)")
        try:
            port = url.port or PROXY_PORT
            infos = await connect_addresses(self._dns, url.hostname, port, refuse_private=False)
            reader, writer = await _open_stream(infos, None, None)
        except (FetchError, OSError, ValueError) as exc:
            raise FetchError("proxy", f"cannot reach proxy {url.hostname}: {exc}") from exc
        target = f"{host}:{HTTPS_PORT}"
        fields = [("Host", target)]
        if url.username is not None:  # as curl does: credentials in the URL (percent-encoded)
            user = urllib.parse.unquote(url.username)
            secret = base64.b64encode(f"{user}:{urllib.parse.unquote(url.password or '')}".encode())
            fields.append(("Proxy-Authorization", f"Basic {secret.decode()}"))
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        try:
            writer.write(conn.send(h11.Request(method="CONNECT", target=target, headers=fields)))
            response = await _response(conn, reader)
        except BaseException as exc:  # also when the deadline cancels us
            writer.transport.abort()
            if isinstance(exc, OSError | h11.ProtocolError | FetchError):
                raise FetchError("proxy", f"CONNECT through {url.hostname}: {exc}") from exc
            raise
        problem = None
        if not 200 <= response.status_code < 300:
            reason = response.reason.decode("latin-1")
            problem = f"proxy answered CONNECT with HTTP {response.status_code} {reason}"
        elif conn.trailing_data[0]:
            problem = "proxy sent data before the TLS handshake"
        if problem is not None:
            writer.transport.abort()
            raise FetchError("proxy", problem.rstrip())
        return reader, writer


async def _open_stream(
    infos: list[aiohappyeyeballs.AddrInfoType], context: ssl.SSLContext | None, host: str | None
) -> Stream:
    """Connect to the first address that answers; TLS with ``context`` when given."""
    sock = await aiohappyeyeballs.start_connection(
        infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S
    )
    try:
        return await asyncio.open_connection(sock=sock, ssl=context, server_hostname=host)
    except BaseException:
        sock.close()  # the transport may not own it yet (also when the deadline cancels us)
        raise


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    path: str,
    headers: dict[str, str],
) -> tuple[int, bytes]:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
    fields = [("Host", host), *headers.items(), ("Connection", "close")]
    writer.write(conn.send(h11.Request(method="GET", target=path, headers=fields)))
    writer.write(conn.send(h11.EndOfMessage()))
    first = await _read(reader)
    if not first:
        raise FetchError("connect", "connection closed before any response")
    conn.receive_data(first)
    response = await _response(conn, reader)
    seen: dict[str, str] = {}
    for name, value in response.headers:
        seen.setdefault(name.decode("latin-1"), value.decode("latin-1"))  # h11: lowercase
    check_headers(response.status_code, response.reason.decode("latin-1"), seen)
    body = bytearray()
    while True:
        event = await _event(conn, reader)
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_POLICY_BYTES:
                raise FetchError("too-large", f"body exceeds {MAX_POLICY_BYTES} bytes")
        elif isinstance(event, h11.EndOfMessage):
            return response.status_code, bytes(body)


async def _response(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Response:
    """The final response, after at most ``MAX_INTERIM_RESPONSES`` 1xx responses.

    h11 bounds each head by itself; the heads together are bounded here, each counted at
    its size on the wire in canonical form (``_head_size``): close enough for a cap.
    """
    interim = 0
    heads = 0
    while True:
        event = await _event(conn, reader)
        if not isinstance(event, h11.Response | h11.InformationalResponse):
            continue
        heads += _head_size(event)
        if heads > MAX_HEAD_BYTES:
            raise FetchError(
                "other",
                f"malformed HTTP response: heads over {MAX_HEAD_BYTES} bytes (1xx included)",
            )
        if isinstance(event, h11.Response):
            return event
        interim += 1
        if interim > MAX_INTERIM_RESPONSES:
            raise FetchError(
                "other",
                f"more than {MAX_INTERIM_RESPONSES} interim (1xx) responses "
                f"(the last HTTP {event.status_code})",
            )


def _head_size(event: h11.Response | h11.InformationalResponse) -> int:
    """Octets of ``HTTP/1.1 <status> <reason>``, the header fields and the blank line."""
    size = 15 + len(event.reason) + 2  # "HTTP/1.1 200 " ... CRLF
    for name, value in event.headers:
        size += len(name) + 2 + len(value) + 2
    return size


async def _event(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Event:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await _read(reader))
            continue
        if isinstance(event, h11.ConnectionClosed):
            raise FetchError("connect", "connection closed before a response")
        assert not isinstance(event, type)  # PAUSED cannot happen: one request only
        return event


async def _read(reader: asyncio.StreamReader) -> bytes:
    """One chunk, then a turn for the loop (see the module docstring): ``read`` returns
    buffered data without suspending, and a fast sender keeps the buffer full."""
    data = await reader.read(READ_CHUNK_BYTES)
    if data:
        await asyncio.sleep(0)
    return data


def translate(exc: BaseException) -> FetchError:
    """Map an ssl/h11/OS exception to a ``FetchError`` with a fixed kind (most specific
    first: a certificate error is also a TLS error, which is also an OSError)."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        return FetchError("certificate", detail)
    if isinstance(exc, ssl.SSLError):
        return FetchError("tls", detail)
    if isinstance(exc, h11.ProtocolError):
        return FetchError("other", f"malformed HTTP response: {detail}")
    if isinstance(exc, OSError):
        return FetchError("connect", detail)
    return FetchError("other", f"{type(exc).__name__}: {detail}")
