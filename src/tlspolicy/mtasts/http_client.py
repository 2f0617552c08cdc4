"""The aiohttp side of the policy fetch: one session, one GET, aiohttp's errors translated.

``mtasts.fetch`` imports this module on its first fetch, in a thread: aiohttp costs about
11 MB and 180 ms to import (its default TLS contexts load the system trust store), which a
server that only ever answers DANE domains, or answers from its cache after a restart, never
needs to pay at start-up. The rules (no redirects, status 200, ``text/plain``, size cap,
``trust_env`` off) are in ``mtasts.fetch``'s docstring; ``mtasts.response`` checks them.
Every aiohttp, ssl and OS exception becomes a ``FetchError`` in ``translate``, nowhere else.
"""

from __future__ import annotations

import ssl

import aiohttp

from tlspolicy.dnsclient import DnsClient
from tlspolicy.errors import FetchError
from tlspolicy.mtasts.resolver import GuardedResolver
from tlspolicy.mtasts.response import MAX_POLICY_BYTES, READ_CHUNK_BYTES, check_headers

FETCH_CONNECTIONS = 16  # our choice: concurrent fetches across all domains


class AiohttpClient:
    """The HTTP client of one ``PolicyFetcher`` (one session, made on first use)."""

    def __init__(
        self,
        *,
        dns: DnsClient,
        context: ssl.SSLContext,
        allow_private: bool,
        connect_port: int | None,
    ) -> None:
        self._resolver = GuardedResolver(
            dns, allow_private=allow_private, connect_port=connect_port
        )
        self._ssl = context
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession | None:
        return self._session

    async def get(self, url: str, headers: dict[str, str], proxy: str | None) -> tuple[int, bytes]:
        """GET ``url``; the status and the body, or ``FetchError``."""
        try:
            return await self._get(url, headers, proxy)
        except (FetchError, TimeoutError):
            raise
        except (aiohttp.ClientError, ssl.SSLError, OSError, ValueError) as exc:
            raise translate(exc) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=self._resolver,
                ssl=self._ssl,
                force_close=True,  # one request per connection: no keep-alive state
                use_dns_cache=False,  # every fetch asks the DnsClient (which caches)
                limit=FETCH_CONNECTIONS,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,  # see mtasts.fetch's docstring (proxies, netrc)
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),  # the fetcher's deadline decides
            )
        return self._session

    async def _get(self, url: str, headers: dict[str, str], proxy: str | None) -> tuple[int, bytes]:
        async with self._client().get(
            url, headers=headers, allow_redirects=False, proxy=proxy
        ) as response:
            seen: dict[str, str] = {}
            for name, value in response.headers.items():
                seen.setdefault(name.lower(), value)  # the first of repeated fields
            check_headers(response.status, response.reason or "", seen)
            body = bytearray()
            async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
                body += chunk
                if len(body) > MAX_POLICY_BYTES:
                    raise FetchError("too-large", f"body exceeds {MAX_POLICY_BYTES} bytes")
        return response.status, bytes(body)


def translate(exc: BaseException) -> FetchError:
    """Map an aiohttp/ssl/OS exception to a ``FetchError`` with a fixed kind (most specific
    first: certificate and proxy errors are also connector errors)."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return FetchError("certificate", detail)
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return FetchError("proxy", detail)
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return FetchError("tls", detail)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return FetchError("dns", detail)
    if isinstance(exc, aiohttp.ClientConnectionError | OSError):
        return FetchError("connect", detail)
    return FetchError("other", f"{type(exc).__name__}: {detail}")
