"""What one SMTP STARTTLS probe saw, as plain values (``probe`` fills them in). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    """How far the SMTP dialogue got."""

    CONNECT = "connect"
    BANNER = "banner"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    HANDSHAKE = "handshake"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class TlsSession:
    """The negotiated TLS session.

    Attributes:
        version: e.g. "TLSv1.3".
        cipher: the cipher suite name.
        chain: the certificates the server sent, DER, leaf first.
        verify_error: OpenSSL's reason when the chain does not verify against the trust
            store (host name not included), "" when it does.
    """

    version: str
    cipher: str
    chain: tuple[bytes, ...]
    verify_error: str = ""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One address of one MX host.

    Attributes:
        host: the MX host name (also the SNI name and the name checked).
        address: the IPv4 or IPv6 address connected to.
        port: the TCP port.
        stage: ``DONE`` when the handshake completed, else the stage that failed.
        error: what went wrong at ``stage`` ("" when done).
        banner: the first line of the 220 greeting.
        starttls: STARTTLS was in the EHLO reply.
        tls: the session, when the handshake completed.
        elapsed_ms: time for the whole probe.
    """

    host: str
    address: str
    port: int
    stage: Stage
    error: str = ""
    banner: str = ""
    starttls: bool = False
    tls: TlsSession | None = None
    elapsed_ms: float = 0.0

    @property
    def family(self) -> str:
        return "IPv6" if ":" in self.address else "IPv4"

    @property
    def label(self) -> str:
        return f"{self.host}[{self.address}]"
