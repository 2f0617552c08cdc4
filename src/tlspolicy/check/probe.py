"""SMTP STARTTLS probe of one MX address: the only adapter of ``check`` (asyncio + ssl).

Rules kept here:
* Connect to ``port`` (25), read the 220 greeting, EHLO, STARTTLS, handshake with SNI set to
  the MX host name (RFC 8461 §7.1), then QUIT. One deadline (``timeout``) per attempt.
* Trust is OpenSSL's verdict against the system store or ``ca_file`` (as Postfix and our
  fetcher use OpenSSL), with the host name check left to ``certs`` so that a wrong name
  and an untrusted chain are told apart. When the chain does not verify, a second
  connection without verification collects it anyway (DANE-EE needs no PKIX trust).
* The presented chain is read with ``get_unverified_chain`` (CPython 3.10+; public as of
  3.13); where it is missing, only the leaf is known.
* Network and TLS exceptions become a ``ProbeResult`` with the failing stage; nothing raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time

from tlspolicy.check.session import ProbeResult, Stage, TlsSession
from tlspolicy.dane.lookup import SMTP_PORT

MAX_REPLY_LINES = 100  # a longer reply is a broken or hostile server
MAX_LINE_BYTES = 4096
DEFAULT_HELO = "tlspolicy-check.invalid"
_ENCODING_DER = 2  # _ssl.ENCODING_DER, for Certificate.public_bytes (CPython 3.10+)


class _Failed(Exception):
    def __init__(self, stage: Stage, error: str) -> None:
        super().__init__(error)
        self.stage = stage
        self.error = error


class SmtpProber:
    """Probes MX addresses; one instance per ``check`` run (it holds the TLS contexts).

    Args:
        ca_file: PEM trust anchors; None means the system store.
        timeout: seconds per connection attempt (connect to QUIT).
        port: TCP port to connect to (25; other ports for labs and firewalled networks).
        helo: the EHLO name.
    """

    def __init__(
        self,
        *,
        ca_file: str | None,
        timeout: float,
        port: int = SMTP_PORT,
        helo: str = DEFAULT_HELO,
    ) -> None:
        verify = ssl.create_default_context(cafile=ca_file)
        verify.check_hostname = False  # judged in certs.py, see the module docstring
        verify.verify_mode = ssl.CERT_REQUIRED
        collect = ssl.create_default_context()
        collect.check_hostname = False
        collect.verify_mode = ssl.CERT_NONE
        self._verify = verify
        self._collect = collect
        self._timeout = timeout
        self._port = port
        self._helo = helo

    async def probe(self, host: str, address: str) -> ProbeResult:
        """Probe ``host`` at ``address``; never raises for network or TLS trouble."""
        started = time.monotonic()
        result = await self._attempt(host, address, self._verify)
        tls = result.tls
        if result.stage is Stage.HANDSHAKE and result.error.startswith("verify:"):
            again = await self._attempt(host, address, self._collect)
            if again.tls is not None:
                reason = result.error.removeprefix("verify:").strip()
                tls = TlsSession(again.tls.version, again.tls.cipher, again.tls.chain, reason)
                result = again
        elapsed = round((time.monotonic() - started) * 1000, 1)
        return ProbeResult(
            host, address, self._port, result.stage, result.error, result.banner,
            result.starttls, tls, elapsed,
        )  # fmt: skip

    async def _attempt(self, host: str, address: str, context: ssl.SSLContext) -> ProbeResult:
        banner = ""
        starttls = False
        writer: asyncio.StreamWriter | None = None
        stage = Stage.CONNECT
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await asyncio.open_connection(address, self._port)
                stage = Stage.BANNER
                code, lines = await _reply(reader)
                banner = lines[0] if lines else ""
                if code != 220:
                    raise _Failed(stage, f"greeting {code} {banner}".strip())
                stage = Stage.EHLO
                code, lines = await _command(reader, writer, f"EHLO {self._helo}")
                if code != 250:
                    raise _Failed(stage, f"EHLO answered {code} {' '.join(lines[:1])}".strip())
                starttls = any(line.split()[:1] == ["STARTTLS"] for line in lines[1:])
                stage = Stage.STARTTLS
                if not starttls:
                    raise _Failed(stage, "STARTTLS is not offered")
                code, lines = await _command(reader, writer, "STARTTLS")
                if code != 220:
                    raise _Failed(stage, f"STARTTLS answered {code} {' '.join(lines[:1])}")
                stage = Stage.HANDSHAKE
                await writer.start_tls(context, server_hostname=host)
                tls = _session(writer)
                with contextlib.suppress(OSError, ssl.SSLError):
                    writer.write(b"QUIT\r\n")
                    await writer.drain()
                return ProbeResult(host, address, self._port, Stage.DONE, "", banner, True, tls)
        except _Failed as exc:
            return ProbeResult(host, address, self._port, exc.stage, exc.error, banner, starttls)
        except ssl.SSLCertVerificationError as exc:
            error = f"verify: {exc.verify_message or exc.reason or exc}"
            return ProbeResult(host, address, self._port, stage, error, banner, starttls)
        except TimeoutError:
            error = f"no answer within {self._timeout:g} s"
            return ProbeResult(host, address, self._port, stage, error, banner, starttls)
        except (OSError, ssl.SSLError, EOFError, asyncio.IncompleteReadError, ValueError) as exc:
            error = str(exc) or type(exc).__name__
            if isinstance(exc, ConnectionRefusedError):
                error = "connection refused"
            return ProbeResult(host, address, self._port, stage, error, banner, starttls)
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)


def _session(writer: asyncio.StreamWriter) -> TlsSession:
    ssl_object = writer.get_extra_info("ssl_object")
    version = str(ssl_object.version() or "") if ssl_object is not None else ""
    cipher_info = ssl_object.cipher() if ssl_object is not None else None
    cipher = cipher_info[0] if cipher_info else ""
    chain: list[bytes] = []
    inner = getattr(ssl_object, "_sslobj", None)
    get_chain = getattr(inner, "get_unverified_chain", None) or getattr(
        ssl_object, "get_unverified_chain", None
    )
    if get_chain is not None:
        for cert in get_chain() or []:
            chain.append(cert if isinstance(cert, bytes) else cert.public_bytes(_ENCODING_DER))
    if not chain and ssl_object is not None:
        leaf = ssl_object.getpeercert(binary_form=True)
        if leaf:
            chain.append(leaf)
    return TlsSession(version, cipher, tuple(chain))


async def _command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str
) -> tuple[int, list[str]]:
    writer.write(line.encode("ascii") + b"\r\n")
    await writer.drain()
    return await _reply(reader)


async def _reply(reader: asyncio.StreamReader) -> tuple[int, list[str]]:
    """One SMTP reply (RFC 5321 §4.2): its code and its text lines."""
    lines: list[str] = []
    for _ in range(MAX_REPLY_LINES):
        raw = await reader.readline()
        if not raw:
            raise EOFError("connection closed by the server")
        if len(raw) > MAX_LINE_BYTES:
            raise ValueError("reply line too long")
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if len(text) < 3 or not text[:3].isdigit():
            raise ValueError(f"not an SMTP reply: {text[:60]!r}")
        lines.append(text[4:])
        if text[3:4] != "-":
            return int(text[:3]), lines
    raise ValueError("reply has too many lines")
