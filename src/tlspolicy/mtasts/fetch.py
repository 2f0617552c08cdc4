"""HTTPS policy fetch (RFC 8461 §3.3), the aiohttp adapter behind ``lookup.Fetcher``.

Every failure leaves this module as ``FetchError`` with a fixed ``kind``; aiohttp, ssl and
OSError exceptions are translated in ``_translate`` and nowhere else. Rules kept here:

* ``GET https://mta-sts.<domain>/.well-known/mta-sts.txt``, HTTPS only, certificate chain
  and host name checked, SNI set, TLS 1.2 or later (RFC 8461 §3.3, §7.1, §7.2).
* No redirects (a 3xx is an error), no HTTP cache (``Cache-Control: no-cache`` is sent and
  nothing is stored), status 200 only (RFC 8461 §3.3).
* Media type ``text/plain``; a ``charset`` parameter must be utf-8 or us-ascii; other
  parameters are ignored (RFC 8461 §3.2). No content coding (we ask for ``identity``), so
  the size cap counts the bytes that are parsed.
* At most ``MAX_POLICY_BYTES`` of body, checked against Content-Length and counted while
  reading, and one deadline over DNS, connect, TLS, headers and body (RFC 8461 §3.3).
* The host name is resolved through our ``DnsClient`` (the validating resolver), never the
  system resolver; addresses that are not globally routable are refused unless
  ``allow_private_addresses`` (an SSRF guard: a hostile domain must not make us GET from our
  own network). Both live in ``mtasts.resolver``.
* Proxies: ``HTTPS_PROXY``/``https_proxy`` and ``NO_PROXY``/``no_proxy`` are honoured the
  way curl and urllib read them. aiohttp's ``trust_env`` is not used because it also sends
  ``~/.netrc`` credentials to the policy hosts. Through a proxy the policy host is resolved
  by the proxy, so the address guard cannot see the final address; restrict the proxy
  instead. An IP-literal proxy is used as given; a named proxy is resolved through our
  ``DnsClient`` without the guard (the operator chose it).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
import urllib.request
from collections.abc import Callable

import aiohttp

from tlspolicy.defaults import MAX_FETCH_TIMEOUT_S
from tlspolicy.dnsclient import DnsClient
from tlspolicy.errors import ConfigError, FetchError
from tlspolicy.mtasts.policy import domain_problem
from tlspolicy.mtasts.resolver import GuardedResolver, resolving_for
from tlspolicy.trace import TraceEvent, record

MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3: suggested maximum policy size 64 kilobytes
POLICY_PATH = "/.well-known/mta-sts.txt"  # RFC 8461 §3.2
HTTPS_PORT = 443  # RFC 8461 §3.3: plain https:// URL, default port
READ_CHUNK_BYTES = 8192  # read granularity; the cap is checked after every chunk
FETCH_CONNECTIONS = 16  # our choice: concurrent fetches across all domains
CHARSETS = frozenset({"utf-8", "us-ascii"})  # RFC 8461 §3.2: charset=utf-8 or us-ascii


def proxy_for(host: str) -> str | None:
    """The proxy URL to reach ``https://host/`` through, from the environment, or None.

    Reads ``https_proxy``/``HTTPS_PROXY`` and ``no_proxy``/``NO_PROXY`` as urllib's
    ``getproxies_environment`` does (the lowercase name wins, also when it is empty, as in
    curl) and applies urllib's ``proxy_bypass_environment``. Only these four variables are
    read: urllib's own function scans the whole environment, twice per call.
    """
    proxy = _env_proxy("https")
    if not proxy:
        return None
    bypass = _env_proxy("no")
    if bypass and _proxy_bypass(host, {"no": bypass}):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


# urllib's no_proxy matching with the variables given (not in typeshed, public since 3.x).
_proxy_bypass: Callable[[str, dict[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]


def _env_proxy(scheme: str) -> str | None:
    lower = os.environ.get(f"{scheme}_proxy")
    if lower is not None:
        return lower or None
    return os.environ.get(f"{scheme.upper()}_PROXY") or None


class PolicyFetcher:
    """Fetches MTA-STS policies over HTTPS; one instance (and session) per process.

    Args:
        dns: resolves the policy host (CNAMEs followed by the DNS adapter).
        ca_file: PEM trust anchors; None means the system store.
        allow_private_addresses: allow loopback/private/... policy host addresses (labs).
        timeout: seconds for the whole fetch, DNS to last body byte (at most 60).
        user_agent: the User-Agent header.
        connect_port: connect to this TCP port instead of 443, keeping the URL, Host header
            and SNI unchanged; for test labs only.

    Raises:
        ConfigError: ``ca_file`` cannot be loaded or ``timeout`` is out of range.
    """

    def __init__(
        self,
        *,
        dns: DnsClient,
        ca_file: str | None,
        allow_private_addresses: bool,
        timeout: float,
        user_agent: str = "postfix-tlspolicy",
        connect_port: int | None = None,
    ) -> None:
        if not 0 < timeout <= MAX_FETCH_TIMEOUT_S:
            raise ConfigError(f"mta_sts.timeout: must be in (0, {MAX_FETCH_TIMEOUT_S:.0f}]")
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"mta_sts.ca_file: cannot load {ca_file}: {exc}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8461 §7.2
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        self._ssl = context
        self._timeout = timeout
        self._user_agent = user_agent
        self._resolver = GuardedResolver(
            dns, allow_private=allow_private_addresses, connect_port=connect_port
        )
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, domain: str) -> str:
        """Fetch the policy of ``domain`` (a lowercase A-label name).

        Returns:
            the body, decoded as UTF-8 (not yet parsed).

        Raises:
            FetchError: kinds ``dns``, ``private-address``, ``connect``, ``tls``,
                ``certificate``, ``timeout``, ``status``, ``redirect``, ``content-type``,
                ``too-large``, ``encoding``, ``proxy``, ``other``.
        """
        host = f"mta-sts.{domain}"
        url = f"https://{host}{POLICY_PATH}"
        started = time.monotonic()
        with resolving_for(host):
            try:
                why = domain_problem(domain)
                if why is not None:
                    raise FetchError("other", f"invalid policy domain {domain!r}: {why}")
                async with asyncio.timeout(self._timeout):
                    status, body = await self._get(host, url)
            except FetchError as exc:
                _record(url, started, "error", f"{exc.kind}: {exc.detail}")
                raise
            except TimeoutError:
                error = FetchError("timeout", f"no complete answer within {self._timeout:g}s")
                _record(url, started, "error", str(error))
                raise error from None
            except (aiohttp.ClientError, ssl.SSLError, OSError, ValueError) as exc:
                error = _translate(exc)
                _record(url, started, "error", str(error))
                raise error from exc
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            error = FetchError("encoding", f"body is not UTF-8 (byte {exc.start})")
            _record(url, started, "error", str(error))
            raise error from None
        _record(url, started, "ok", f"HTTP {status}, {len(body)} bytes")
        return text

    async def aclose(self) -> None:
        """Close the HTTP session (idempotent)."""
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
                trust_env=False,  # see the module docstring (proxies, netrc)
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),  # our asyncio.timeout decides
            )
        return self._session

    async def _get(self, host: str, url: str) -> tuple[int, bytes]:
        headers = {
            "User-Agent": self._user_agent,
            "Accept": "text/plain",
            "Accept-Encoding": "identity",
            "Cache-Control": "no-cache",  # RFC 8461 §3.3: HTTP caching MUST NOT be used
        }
        async with self._client().get(
            url, headers=headers, allow_redirects=False, proxy=proxy_for(host)
        ) as response:
            status = response.status
            if 300 <= status < 400:
                target = response.headers.get("Location", "?")
                raise FetchError("redirect", f"HTTP {status} to {target} (not followed)")
            if status != 200:
                raise FetchError("status", f"HTTP {status} {response.reason or ''}".rstrip())
            _check_media_type(response.headers.get("Content-Type"))
            coding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if coding not in ("", "identity"):
                raise FetchError("encoding", f"unexpected Content-Encoding {coding!r}")
            length = response.headers.get("Content-Length")
            if length is not None and length.strip().isdigit() and int(length) > MAX_POLICY_BYTES:
                raise FetchError("too-large", f"Content-Length {int(length)}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
                body += chunk
                if len(body) > MAX_POLICY_BYTES:
                    raise FetchError("too-large", f"body exceeds {MAX_POLICY_BYTES} bytes")
        return status, bytes(body)


def _check_media_type(value: str | None) -> None:
    """RFC 8461 §3.2: ``text/plain``; ``charset`` (if any) utf-8 or us-ascii."""
    if value is None:
        raise FetchError("content-type", "no Content-Type (need text/plain)")
    media_type, *parameters = value.split(";")
    if media_type.strip().lower() != "text/plain":
        raise FetchError("content-type", f"Content-Type {value.strip()!r} (need text/plain)")
    for parameter in parameters:
        name, _, raw = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = raw.strip().strip('"').lower()
            if charset not in CHARSETS:
                raise FetchError("content-type", f"charset {charset!r} (need utf-8 or us-ascii)")


def _translate(exc: BaseException) -> FetchError:
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


def _record(url: str, started: float, status: str, detail: str) -> None:
    elapsed = (time.monotonic() - started) * 1000
    record(TraceEvent("https", url, detail, status, elapsed_ms=round(elapsed, 1)))
