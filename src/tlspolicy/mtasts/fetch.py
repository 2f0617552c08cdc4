"""HTTPS policy fetch (RFC 8461 §3.3), the adapter behind ``lookup.Fetcher``.

Every failure leaves this module as ``FetchError`` with a fixed ``kind``; h11, ssl and
OSError exceptions are translated in ``mtasts.http_client.translate`` and nowhere else.
The HTTP client is imported on the first fetch, in a thread, so that a server answering
DANE or cached domains never loads it (``tlspolicy serve`` preloads it before dropping
privileges). Rules kept here:

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
  way curl and urllib read them (an ``http://`` proxy, CONNECT, credentials from its URL
  sent to the proxy only; ``~/.netrc`` is never read). Through a proxy the policy host is
  resolved by the proxy, so the address guard cannot see the final address; restrict the
  proxy instead. An IP-literal proxy is used as given; a named proxy is resolved through
  our ``DnsClient`` without the guard (the operator chose it).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tlspolicy.config.defaults import MAX_FETCH_TIMEOUT_S
from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.dnsstub.trace import TraceEvent, record
from tlspolicy.errors import ConfigError, FetchError
from tlspolicy.mtasts.policy import domain_problem

if TYPE_CHECKING:
    from tlspolicy.mtasts.http_client import HttpClient

POLICY_PATH = "/.well-known/mta-sts.txt"  # RFC 8461 §3.2
HTTP_CLIENT_MODULE = "tlspolicy.mtasts.http_client"


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
    if bypass and _proxy_bypass()(host, {"no": bypass}):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _proxy_bypass() -> Callable[[str, dict[str, str]], bool]:
    """urllib's no_proxy matching with the variables given (not in typeshed). Imported when
    a proxy is configured: urllib.request costs 19 ms of every start-up otherwise."""
    import urllib.request  # noqa: PLC0415 - see the docstring; preloaded before a drop

    bypass: Callable[[str, dict[str, str]], bool]
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    return bypass


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
        self._dns = dns
        self._allow_private = allow_private_addresses
        self._connect_port = connect_port
        self._http: HttpClient | None = None

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
        http = await self._client()
        started = time.monotonic()
        headers = {
            "User-Agent": self._user_agent,
            "Accept": "text/plain",
            "Accept-Encoding": "identity",
            "Cache-Control": "no-cache",  # RFC 8461 §3.3: HTTP caching MUST NOT be used
        }
        try:
            why = domain_problem(domain)
            if why is not None:
                raise FetchError("other", f"invalid policy domain {domain!r}: {why}")
            async with asyncio.timeout(self._timeout):
                status, body = await http.get(host, POLICY_PATH, headers, proxy_for(host))
        except FetchError as exc:
            _record(url, started, "error", f"{exc.kind}: {exc.detail}")
            raise
        except TimeoutError:
            error = FetchError("timeout", f"no complete answer within {self._timeout:g}s")
            _record(url, started, "error", str(error))
            raise error from None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            error = FetchError("encoding", f"body is not UTF-8 (byte {exc.start})")
            _record(url, started, "error", str(error))
            raise error from None
        _record(url, started, "ok", f"HTTP {status}, {len(body)} bytes")
        return text

    def reconfigure(
        self, *, ca_file: str | None, allow_private_addresses: bool, timeout: float
    ) -> None:
        """Take new ``mta_sts`` settings (a reload): the next fetch uses them; fetches under
        way finish with the old ones. Raises ``ConfigError`` like the constructor, with
        nothing changed."""
        fresh = PolicyFetcher(
            dns=self._dns, ca_file=ca_file, allow_private_addresses=allow_private_addresses,
            timeout=timeout, user_agent=self._user_agent, connect_port=self._connect_port,
        )  # fmt: skip
        self._ssl, self._timeout = fresh._ssl, fresh._timeout
        self._allow_private = allow_private_addresses
        self._http = None  # made anew with these settings by the next fetch

    async def aclose(self) -> None:
        """Close the HTTP session (idempotent)."""
        if self._http is not None:
            await self._http.close()

    async def _client(self) -> HttpClient:
        if self._http is None:
            module = await _http_client_module()
            client: HttpClient = module.HttpClient(
                dns=self._dns,
                context=self._ssl,
                allow_private=self._allow_private,
                connect_port=self._connect_port,
            )
            self._http = self._http or client  # another first fetch may have been quicker
        return self._http


async def _http_client_module() -> Any:
    """``mtasts.http_client``, imported in a thread the first time (see the docstring), so
    the event loop goes on answering meanwhile."""
    loaded = _LOADED.get(HTTP_CLIENT_MODULE)
    if loaded is None:
        loaded = await asyncio.to_thread(importlib.import_module, HTTP_CLIENT_MODULE)
        _LOADED[HTTP_CLIENT_MODULE] = loaded
    return loaded


_LOADED: dict[str, Any] = {}  # fully imported modules (sys.modules also holds half-done ones)


def _record(url: str, started: float, status: str, detail: str) -> None:
    elapsed = (time.monotonic() - started) * 1000
    record(TraceEvent("https", url, detail, status, elapsed_ms=round(elapsed, 1)))
