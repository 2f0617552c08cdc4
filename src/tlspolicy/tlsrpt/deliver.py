"""Send one report to one destination: SMTP submission to the relay, or HTTPS POST.

Third-party exceptions become ``DeliveryError`` here and nowhere else. The kinds in
``PERMANENT_KINDS`` are the recipient domain's choice, not a passing fault: the reporter
gives such a destination up at once instead of retrying it for a day.

* Mail goes to the configured relay (default the local Postfix on 127.0.0.1:25) without
  STARTTLS: the relay is local, and the report's own ``TLS-Required: No`` header tells
  Postfix to deliver it onwards despite TLS failures (RFC 8460 §5.3). Any SMTP error, a
  refused recipient included, is a failed attempt.
* HTTPS POSTs the gzip body with ``Content-Type: application/tlsrpt+gzip`` (RFC 8460
  §5.4). Only a 2xx status counts as delivered; redirects are not followed (a 3xx is a
  failure, as is every other status). Certificates are verified against ``ca_file`` or the
  system store (RFC 8460 allows ignoring errors; we do not, a report may be sensitive).
* The URL comes from the recipient domain's record, so where the POST connects is
  decided here, not by the URL: the host is resolved through our validating ``DnsClient``
  (never the system resolver), non-public addresses are refused with the guard the
  MTA-STS fetch uses (``mtasts.addresses``) unless ``allow_private``, and aiohttp connects
  to exactly the checked address while SNI and Host keep the name. An IP-literal host is
  refused outright (``record`` already makes it unusable). Without this a record could
  make us POST to our own Redis, a cloud metadata service, or scan ports by timing.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from tlspolicy import __version__
from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.errors import DeliveryError, FetchError
from tlspolicy.mtasts.resolver import connect_addresses, is_ip

PERMANENT_KINDS = frozenset({"private-address", "refused"})
MAX_ERROR_CHARS = 300  # of a peer's error text kept in the deliveries table


async def send_mail(
    message: bytes, *, sender: str, recipient: str, host: str, port: int, limit_s: float
) -> None:
    """Submit ``message`` to the relay; raises ``DeliveryError`` unless it was accepted."""
    import aiosmtplib  # noqa: PLC0415 - the [mail] extra, checked when the configuration loads

    try:
        errors, _ = await aiosmtplib.send(
            message,
            sender=sender,
            recipients=[recipient],
            hostname=host,
            port=port,
            timeout=limit_s,
            use_tls=False,
            start_tls=False,
        )
    except aiosmtplib.SMTPResponseException as exc:
        raise DeliveryError("smtp", f"{exc.code} {exc.message}"[:MAX_ERROR_CHARS]) from None
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        raise DeliveryError("connect", (str(exc) or type(exc).__name__)[:MAX_ERROR_CHARS]) from None
    if errors:
        code, text = next(iter(errors.values()))
        raise DeliveryError("smtp", f"{code} {text}"[:MAX_ERROR_CHARS])


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for report POSTs: our ``DnsClient`` and the public-address guard."""

    def __init__(self, dns: DnsClient, *, allow_private: bool) -> None:
        self._dns = dns
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if is_ip(host):
            raise DeliveryError("refused", f"{host} is an IP address, not a host name")
        try:
            infos = await connect_addresses(
                self._dns, host, port, refuse_private=not self._allow_private,
                setting="tlsrpt.allow_private_addresses",
            )  # fmt: skip
        except FetchError as exc:
            raise DeliveryError(exc.kind, exc.detail) from None
        return [
            ResolveResult(
                hostname=host,
                host=str(info[4][0]),
                port=port,
                family=info[0],
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for info in infos
        ]

    async def close(self) -> None:
        return None


async def post_https(
    url: str,
    body: bytes,
    *,
    dns: DnsClient,
    allow_private: bool,
    ca_file: str | None,
    limit_s: float,
) -> None:
    """POST the gzipped report; raises ``DeliveryError`` unless the status is 2xx."""
    context = ssl.create_default_context(cafile=ca_file)
    headers = {
        "Content-Type": "application/tlsrpt+gzip",
        "User-Agent": f"postfix-tlspolicy/{__version__}",
    }
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(dns, allow_private=allow_private), use_dns_cache=False
    )
    session_args: dict[str, Any] = {
        "timeout": aiohttp.ClientTimeout(total=limit_s),
        "connector": connector,
        "trust_env": False,  # no proxy from the environment: the guard decides the address
    }
    try:
        async with (
            aiohttp.ClientSession(**session_args) as session,
            session.post(
                url, data=body, headers=headers, ssl=context, allow_redirects=False
            ) as response,
        ):
            if not 200 <= response.status < 300:
                text = (await response.content.read(MAX_ERROR_CHARS)).decode("utf-8", "replace")
                raise DeliveryError("http-status", f"{response.status} {text}".strip())
    except DeliveryError:
        raise
    except aiohttp.ClientSSLError as exc:
        raise DeliveryError("tls", str(exc)[:MAX_ERROR_CHARS]) from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise DeliveryError("connect", (str(exc) or type(exc).__name__)[:MAX_ERROR_CHARS]) from None
    except TimeoutError:
        raise DeliveryError("timeout", f"no answer within {limit_s:g} s") from None
