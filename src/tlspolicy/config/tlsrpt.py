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

Inbound reports (reports other senders send about our own domains,
``docs/tlsrpt-inbound.md``) use the same store and these keys:

* ``inbound_listen``: ``host:port`` of the HTTPS endpoint's plain-HTTP side (``POST
  /tlsrpt``, behind the operator's TLS reverse proxy); unset (default): no endpoint.
* ``inbound_domains``: the operator's own policy domains; metrics label these, and count
  every other domain as ``other`` (default: none, everything is ``other``).
* ``inbound_keep_days``: received reports (raw, gzipped) and their counts are kept this
  many days (default 90).
* ``inbound_rate``: requests per source address per minute on the endpoint (default 60).
* ``inbound_trusted_proxies``: peers whose ``X-Forwarded-For`` names the source address
  (default loopback: 127.0.0.1 and ::1).
* ``inbound_dkim_strict``: mail reports only count when the DKIM key says ``s=tlsrpt``
  (RFC 8460 §3 SHOULD; default false: large senders sign with keys without it).

RFC 8460 §5.3: "The 'TLS-Report-Submitter' value MUST match the value found in the
[RFC5321] domain from the 'contact-info'". So the submitter is the domain of
``contact_info``; ``submitter`` alone gives ``contact_info`` ``postmaster@<submitter>``, and
both together must agree (a mismatch is refused at load). ``contact_info`` is an RFC 5321
Mailbox (§4.4), never a display name with an address.
"""

from __future__ import annotations

import ipaddress
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
from tlspolicy.config.keydoc import UNSET, key
from tlspolicy.errors import ConfigError
from tlspolicy.names import mailbox

T = TypeVar("T")

DEFAULT_RECEIVE_BUFFER = 8 * 1024 * 1024  # SO_RCVBUF asked for; the kernel caps it (rmem_max)
DEFAULT_SOCKET_MODE = 0o660  # Postfix's smtp(8) writes through the group (socket_group)


@dataclass(frozen=True, slots=True)
class TlsrptConfig:
    """``tlsrpt:``: the collector of Postfix's TLS results, the store, the reporter."""

    collector_socket: str | None = key(
        None, "absolute path of the datagram socket Postfix's smtp(8) reports TLS results to",
        example="/var/spool/postfix/run/tlsrpt/tlsrpt.sock",
    )  # fmt: skip
    socket_mode: int = key(DEFAULT_SOCKET_MODE, "permissions of the socket", yaml='"0660"')
    socket_owner: str | None = key(None, "owner of the socket (a user name)", example="postfix")
    socket_group: str | None = key(
        None, "group of the socket; Postfix writes through it", example="postfix"
    )
    receive_buffer: int = key(
        DEFAULT_RECEIVE_BUFFER, "SO_RCVBUF bytes asked for (the kernel caps it at rmem_max)"
    )
    store_backend: str = key("sqlite", "sqlite or postgres", name="store.backend")
    store_path: str = key(
        "", "the sqlite file; not set: tlsrpt.sqlite3 beside the cache file",
        name="store.path", yaml="(see description)", example="/var/lib/tlspolicy/tlsrpt.sqlite3",
    )  # fmt: skip
    store_url: str | None = key(
        None, "postgresql:// URL of the store (backend postgres)", name="store.url",
        example="postgresql://tlspolicy@127.0.0.1/tlspolicy",
    )  # fmt: skip
    reporter: bool = key(False, "send the daily aggregate reports (RFC 8460 §4)")
    mail_reports: bool = key(
        True, "send to mailto: destinations too (the [mail] extra); false: HTTPS only"
    )
    submitter: str | None = key(
        None, "the reporting domain; default: the domain of contact_info", example="example.net"
    )
    organization_name: str | None = key(
        None, "organization-name of reports; default: the submitter", example="Example Networks"
    )
    contact_info: str | None = key(
        None, "contact-info of reports, a plain mail address; required by the reporter",
        example="tlsrpt@example.net",
    )  # fmt: skip
    sender: str | None = key(
        None, "From: of mail reports; default: noreply-tlsrpt@<submitter>",
        example="noreply-tlsrpt@example.net",
    )  # fmt: skip
    smtp_host: str = key("127.0.0.1", "the MTA that mail reports are handed to")
    smtp_port: int = key(25, "its SMTP port")
    smtp_timeout: float = key(60.0, "seconds for one SMTP submission")
    https_timeout: float = key(60.0, "seconds for one HTTPS POST of a report")
    https_ca_file: str | None = key(
        None, "PEM bundle to trust for report hosts; not set: the system store",
        example="/etc/ssl/certs/ca-certificates.crt",
    )  # fmt: skip
    https_ports: tuple[int, ...] = key(
        (HTTPS_PORT,), "ports an https: rua URL may name (others are refused)"
    )
    allow_private_addresses: bool = key(
        False, "POST to loopback or private addresses (test labs only)"
    )
    dkim_key: str | None = key(
        None, "PEM private key to DKIM-sign mail reports with (receivers ignore unsigned ones)",
        example="/etc/tlspolicy/dkim.pem",
    )  # fmt: skip
    dkim_selector: str = key("tlsrpt", "DKIM selector of the key")
    dkim_domain: str | None = key(
        None, "DKIM signing domain; default: the submitter", example="example.net"
    )
    delay: float = key(900.0, "seconds after 00:00 UTC before the day's reports may go out")
    spread: float = key(
        14400.0, "a random further delay of up to this many seconds per domain (RFC 8460 §4.1)"
    )
    only_with_failures: bool = key(False, "send only reports that count a failure")
    suppress: tuple[str, ...] = key(
        (), "never report to these domains (and their subdomains)", yaml=UNSET,
        example="[example.org]",
    )  # fmt: skip
    retry_for: float = key(86400.0, "seconds to retry a failed delivery (RFC 8460 §5.5)")
    retry_min: float = key(300.0, "shortest wait between two delivery attempts (seconds)")
    retry_max: float = key(7200.0, "longest wait between two delivery attempts (seconds)")
    check_interval: float = key(60.0, "seconds between two looks for due reports")
    keep_days: int = key(14, "days of results kept in the store, at least 3")
    inbound_listen: str | None = key(
        None,
        "host:port of the inbound report endpoint (POST /tlsrpt), plain HTTP behind your TLS"
        " reverse proxy; not set: no endpoint",
        example='"127.0.0.1:8644"',
    )
    inbound_domains: tuple[str, ...] = key(
        (),
        "your own policy domains, whose received reports are counted by domain in the"
        " metrics (others count as other)",
        yaml=UNSET,
        example="[example.com]",
    )
    inbound_keep_days: int = key(90, "days received reports (raw, gzipped) are kept")
    inbound_rate: int = key(60, "requests per source address per minute on the endpoint")
    inbound_trusted_proxies: tuple[str, ...] = key(
        ("127.0.0.1", "::1"),
        "peers whose X-Forwarded-For names the source address (your reverse proxy)",
    )
    inbound_dkim_strict: bool = key(
        False, "received mail reports count only when the DKIM key record says s=tlsrpt"
    )

    @property
    def inbound(self) -> bool:
        """Reports from others are received here (the endpoint, or domains to count)."""
        return self.inbound_listen is not None or bool(self.inbound_domains)

    @property
    def in_use(self) -> bool:
        """A collector, the reporter or inbound reports are configured (what ``serve``
        runs for TLSRPT)."""
        return self.collector_socket is not None or self.reporter or self.inbound

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

    def tcp_listen(key: str, value: Any) -> str | None:
        text = optional_string(key, value)
        if text is None:
            return None
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ConfigError(f"{key}: must be host:port, e.g. 127.0.0.1:8643")
        ip_address(key, host.removeprefix("[").removesuffix("]"))
        port(key, int(port_text) if port_text.isdigit() else port_text)
        return text

    def ip_address(key: str, value: Any) -> str:
        try:
            return str(ipaddress.ip_address(string(key, value)))
        except ValueError:
            raise ConfigError(f"{key}: {value!r} is not an IP address") from None

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
        inbound_listen=s.get("inbound_listen", d.inbound_listen, tcp_listen),
        inbound_domains=s.get(
            "inbound_domains", d.inbound_domains, lambda k, v: list_of(k, v, domain_name)
        ),
        inbound_keep_days=s.get("inbound_keep_days", d.inbound_keep_days, positive_int),
        inbound_rate=s.get("inbound_rate", d.inbound_rate, positive_int),
        inbound_trusted_proxies=s.get(
            "inbound_trusted_proxies",
            d.inbound_trusted_proxies,
            lambda k, v: list_of(k, v, ip_address),
        ),
        inbound_dkim_strict=s.get("inbound_dkim_strict", d.inbound_dkim_strict, boolean),
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
