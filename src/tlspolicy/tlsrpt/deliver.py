"""Send one report to one destination: SMTP submission to the relay, or HTTPS POST.

Third-party exceptions become ``DeliveryError`` here and nowhere else.

* Mail goes to the configured relay (default the local Postfix on 127.0.0.1:25) without
  STARTTLS: the relay is local, and the report's own ``TLS-Required: No`` header tells
  Postfix to deliver it onwards despite TLS failures (RFC 8460 §5.3). Any SMTP error, a
  refused recipient included, is a failed attempt.
* HTTPS POSTs the gzip body with ``Content-Type: application/tlsrpt+gzip`` (RFC 8460
  §5.4). Only a 2xx status counts as delivered; redirects are not followed (a 3xx is a
  failure, as is every other status). Certificates are verified against ``ca_file`` or the
  system store (RFC 8460 allows ignoring errors; we do not, a report may be sensitive).
"""

from __future__ import annotations

import ssl

import aiohttp
import aiosmtplib

from tlspolicy import __version__
from tlspolicy.errors import DeliveryError

MAX_ERROR_CHARS = 300  # of a peer's error text kept in the deliveries table


async def send_mail(
    message: bytes, *, sender: str, recipient: str, host: str, port: int, limit_s: float
) -> None:
    """Submit ``message`` to the relay; raises ``DeliveryError`` unless it was accepted."""
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


async def post_https(url: str, body: bytes, *, ca_file: str | None, limit_s: float) -> None:
    """POST the gzipped report; raises ``DeliveryError`` unless the status is 2xx."""
    context = ssl.create_default_context(cafile=ca_file)
    headers = {
        "Content-Type": "application/tlsrpt+gzip",
        "User-Agent": f"postfix-tlspolicy/{__version__}",
    }
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit_s)) as session,
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
    except (aiohttp.ClientError, OSError) as exc:
        raise DeliveryError("connect", (str(exc) or type(exc).__name__)[:MAX_ERROR_CHARS]) from None
    except TimeoutError:
        raise DeliveryError("timeout", f"no answer within {limit_s:g} s") from None
