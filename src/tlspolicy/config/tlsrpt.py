"""The ``tlsrpt:`` section of the configuration: collector socket, store and reporter.

Same rules and checks as ``config.py`` (both use ``configcheck``): every problem is named
by its key, unknown keys are errors, every key has an embedded default. With no
``tlsrpt:`` section the collector is off (no ``collector_socket``) and so is the reporter.

Example::

    tlsrpt:
      collector_socket: /var/spool/postfix/run/tlsrpt/tlsrpt.sock
      socket_group: postfix
      reporter: true
      contact_info: tlsrpt@example.net  # the submitter is its domain: example.net
      organization_name: Example Networks

RFC 8460 §5.3: "The 'TLS-Report-Submitter' value MUST match the value found in the
[RFC5321] domain from the 'contact-info'". So the submitter is the domain of
``contact_info``; ``submitter`` alone gives ``contact_info`` ``postmaster@<submitter>``, and
both together must agree (a mismatch is refused at load). ``contact_info`` is an RFC 5321
Mailbox (§4.4), never a display name with an address.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from tlspolicy.config.checks import (
    Section,
    boolean,
    choice,
    domain_name,
    file_mode,
    list_of,
    needs_extra,
    non_negative,
    optional_string,
    positive,
    positive_int,
    string,
)
from tlspolicy.config.defaults import HTTPS_PORT
from tlspolicy.errors import ConfigError
from tlspolicy.names import mailbox

T = TypeVar("T")

DEFAULT_RECEIVE_BUFFER = 8 * 1024 * 1024  # SO_RCVBUF asked for; the kernel caps it (rmem_max)
DEFAULT_SOCKET_MODE = 0o660  # Postfix's smtp(8) writes through the group (socket_group)


@dataclass(frozen=True, slots=True)
class TlsrptConfig:
    collector_socket: str | None = None
    socket_mode: int = DEFAULT_SOCKET_MODE
    socket_owner: str | None = None
    socket_group: str | None = None
    receive_buffer: int = DEFAULT_RECEIVE_BUFFER
    store_backend: str = "sqlite"
    store_path: str = ""
    store_url: str | None = None
    reporter: bool = False
    mail_reports: bool = True  # mailto: destinations (the [mail] extra); off: HTTPS only
    submitter: str | None = None
    organization_name: str | None = None
    contact_info: str | None = None
    sender: str | None = None
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_timeout: float = 60.0
    https_timeout: float = 60.0
    https_ca_file: str | None = None
    https_ports: tuple[int, ...] = (HTTPS_PORT,)  # rua ports a report may be POSTed to
    allow_private_addresses: bool = False  # POST to non-public addresses (test labs only)
    dkim_key: str | None = None
    dkim_selector: str = "tlsrpt"
    dkim_domain: str | None = None
    delay: float = 900.0  # after 00:00 UTC, before the first report of the day goes out
    spread: float = 14400.0  # RFC 8460 §4.1's example: a random delay of up to 4 hours
    only_with_failures: bool = False
    suppress: tuple[str, ...] = ()
    retry_for: float = 86400.0  # RFC 8460 §5.5: retry for up to 24 hours
    retry_min: float = 300.0
    retry_max: float = 7200.0
    check_interval: float = 60.0
    keep_days: int = 14

    @property
    def in_use(self) -> bool:
        """A collector or the reporter is configured (what ``serve`` runs for TLSRPT)."""
        return self.collector_socket is not None or self.reporter

    @property
    def unsigned_mail(self) -> str | None:
        """The warning for mail reports without DKIM, or None (``serve`` and ``check-config``
        say it loudly: receivers MUST ignore such reports, RFC 8460 §3)."""
        if not (self.reporter and self.mail_reports) or self.dkim_key is not None:
            return None
        return (
            "tlsrpt.dkim_key is not set: mail reports go out unsigned, and RFC 8460 §3 says"
            " receivers MUST ignore reports without a valid DKIM signature by the reporting"
            f" domain ({self.dkim_domain or self.submitter}). Set tlsrpt.dkim_key (the README's"
            " TLSRPT section shows the DNS record), or tlsrpt.mail_reports: false"
        )

    @property
    def organization(self) -> str:
        return self.organization_name or self.submitter or ""

    @property
    def contact(self) -> str:
        return self.contact_info or f"postmaster@{self.submitter}"

    @property
    def from_address(self) -> str:
        return self.sender or f"noreply-tlsrpt@{self.submitter}"

    def suppressed(self, domain: str) -> bool:
        """True for a listed domain and its subdomains."""
        return any(domain == s or domain.endswith("." + s) for s in self.suppress)


def default_store_path(cache_path: str) -> str:
    """``tlsrpt.sqlite3`` in the cache file's directory."""
    return str(Path(cache_path).parent / "tlsrpt.sqlite3")


def parse_tlsrpt(data: Any, *, cache_path: str) -> TlsrptConfig:
    """Validate the ``tlsrpt`` mapping; the SQLite store defaults to the cache's directory."""
    s = Section(data, "tlsrpt")
    d = TlsrptConfig()

    def socket_path(key: str, value: Any) -> str | None:
        path = optional_string(key, value)
        if path is not None and not path.startswith("/"):
            raise ConfigError(f"{key}: must be an absolute path (Postfix's path may be relative)")
        return path

    def existing_file(key: str, value: Any) -> str | None:
        path = optional_string(key, value)
        if path is not None:
            try:
                open(path, "rb").close()
            except OSError as exc:
                raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None
        return path

    def port(key: str, value: Any) -> int:
        number = positive_int(key, value)
        if number > 65535:
            raise ConfigError(f"{key}: port must be a number from 1 to 65535")
        return number

    def address(key: str, value: Any) -> str | None:
        text = optional_string(key, value)
        if text is not None and not mailbox(text):
            raise ConfigError(
                f"{key}: must be a plain mail address such as tlsrpt@example.net"
                " (RFC 8460 §4.4: an RFC 5321 Mailbox; no display name, comment or <>)"
            )
        return text

    store = Section(s.get("store", None, lambda k, v: v), "tlsrpt.store")
    backend = store.get("backend", d.store_backend, choice("sqlite", "postgres"))
    store_path = store.get("path", "", string) or default_store_path(cache_path)
    store_url = store.get("url", d.store_url, optional_string)
    store.finish()
    if backend == "postgres" and not store_url:
        raise ConfigError("tlsrpt.store.url: required for the postgres backend")
    if store_url and not store_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("tlsrpt.store.url: must start with postgresql://")

    config = TlsrptConfig(
        collector_socket=s.get("collector_socket", d.collector_socket, socket_path),
        socket_mode=s.get("socket_mode", d.socket_mode, file_mode),
        socket_owner=s.get("socket_owner", d.socket_owner, optional_string),
        socket_group=s.get("socket_group", d.socket_group, optional_string),
        receive_buffer=s.get("receive_buffer", d.receive_buffer, positive_int),
        store_backend=backend,
        store_path=store_path,
        store_url=store_url,
        reporter=s.get("reporter", d.reporter, boolean),
        mail_reports=s.get("mail_reports", d.mail_reports, boolean),
        submitter=s.get("submitter", d.submitter, domain_name),
        organization_name=s.get("organization_name", d.organization_name, optional_string),
        contact_info=s.get("contact_info", d.contact_info, address),
        sender=s.get("sender", d.sender, address),
        smtp_host=s.get("smtp_host", d.smtp_host, string),
        smtp_port=s.get("smtp_port", d.smtp_port, port),
        smtp_timeout=s.get("smtp_timeout", d.smtp_timeout, positive),
        https_timeout=s.get("https_timeout", d.https_timeout, positive),
        https_ca_file=s.get("https_ca_file", d.https_ca_file, existing_file),
        https_ports=s.get("https_ports", d.https_ports, lambda k, v: list_of(k, v, port)),
        allow_private_addresses=s.get(
            "allow_private_addresses", d.allow_private_addresses, boolean
        ),
        dkim_key=s.get("dkim_key", d.dkim_key, existing_file),
        dkim_selector=s.get("dkim_selector", d.dkim_selector, string),
        dkim_domain=s.get("dkim_domain", d.dkim_domain, domain_name),
        delay=s.get("delay", d.delay, non_negative),
        spread=s.get("spread", d.spread, non_negative),
        only_with_failures=s.get("only_with_failures", d.only_with_failures, boolean),
        suppress=s.get("suppress", d.suppress, lambda k, v: list_of(k, v, domain_name)),
        retry_for=s.get("retry_for", d.retry_for, positive),
        retry_min=s.get("retry_min", d.retry_min, positive),
        retry_max=s.get("retry_max", d.retry_max, positive),
        check_interval=s.get("check_interval", d.check_interval, positive),
        keep_days=s.get("keep_days", d.keep_days, positive_int),
    )
    s.finish()
    config = _with_submitter(config)
    if config.reporter and config.submitter is None:
        raise ConfigError(
            "tlsrpt.contact_info: required when tlsrpt.reporter is true (or tlsrpt.submitter,"
            " which gives postmaster@<submitter>)"
        )
    if backend == "postgres":
        needs_extra("tlsrpt.store.backend", "the postgres store", "postgres", "asyncpg")
    if config.reporter and config.mail_reports:
        needs_extra(
            "tlsrpt.mail_reports", "sending reports by mail (set it to false to send HTTPS"
            " reports only)", "mail", "aiosmtplib",
        )  # fmt: skip
    if config.dkim_key is not None:
        needs_extra("tlsrpt.dkim_key", "DKIM signing", "mail", "dkim")
    if config.retry_min > config.retry_max:
        raise ConfigError("tlsrpt.retry_min: must not be larger than tlsrpt.retry_max")
    if config.keep_days < 3:
        raise ConfigError("tlsrpt.keep_days: must be at least 3 (yesterday is still sent)")
    return config


def _with_submitter(config: TlsrptConfig) -> TlsrptConfig:
    """The submitter is the domain of ``contact_info`` (RFC 8460 §5.3; see the module doc)."""
    if config.contact_info is None:
        return config
    domain = config.contact_info.rpartition("@")[2].lower()
    if config.submitter is not None and config.submitter != domain:
        raise ConfigError(
            f"tlsrpt.submitter: {config.submitter} is not the domain of tlsrpt.contact_info"
            f" ({config.contact_info}); RFC 8460 §5.3 requires them to match: set submitter"
            f" to {domain}, or leave it out (it defaults to that domain)"
        )
    return replace(config, submitter=domain)
