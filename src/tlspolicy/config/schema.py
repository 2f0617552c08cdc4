"""The configuration's values: enums for fixed vocabularies, frozen dataclasses per section
with every embedded default. ``config`` parses YAML into these; other modules import them
from there."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from tlspolicy.config.defaults import (
    DANE_MAX_TTL_S,
    DANE_MIN_TTL_S,
    DANE_NEGATIVE_TTL_S,
    DNS_CONCURRENCY,
    DNS_UDP_SIZE,
    FETCH_BACKOFF_S,
)
from tlspolicy.config.keydoc import UNSET, key
from tlspolicy.config.overrides import Override
from tlspolicy.config.tlsrpt import TlsrptConfig

LOOKUP_TAG_CHARS = 12  # of the SHA-256 hex digest: a fingerprint, not a secret


class ListenKind(StrEnum):
    TCP = "tcp"
    UNIX = "unix"


class DnsFailure(StrEnum):
    """``mta_sts.dns_failure``: the answer when the TXT lookup fails and nothing is cached."""

    NOTFOUND = "notfound"
    TEMP = "temp"


class ValidationFailure(StrEnum):
    """``dns.on_validation_failure``: what to answer while the resolver does not validate."""

    CONTINUE = "continue"
    TEMP = "temp"


class ConfigOrigin(StrEnum):
    """Where the configuration came from: every command that uses the cache says it, so an
    administrator never acts on another cache than the server's without knowing."""

    OPTION = "-c"  # -c/--config FILE
    ENVIRONMENT = "TLSPOLICY_CONFIG"  # the environment variable named a file
    DEFAULT = "default"  # the default path (load.DEFAULT_CONFIG_PATH) exists
    EMBEDDED = "embedded"  # no file at the default path: every key's embedded default
    DATA = "data"  # parse_config of a mapping (tests, tools)


class BackendName(StrEnum):
    """``cache.backend``."""

    MEMORY = "memory"
    SQLITE = "sqlite"
    REDIS = "redis"
    POSTGRES = "postgres"


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """``tcp`` (host, port) or ``unix`` (path)."""

    kind: ListenKind
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class MapProfile:
    """One socketmap name's profile (``maps.NAME``): how verdicts become Postfix answers."""

    tlsrpt: bool = key(False, "add the TLSRPT policy attributes Postfix 3.10+ reports with")
    strict_testing: bool = key(
        False, "MTA-STS testing mode answers as enforce (false: testing answers NOTFOUND)"
    )
    servername: bool = key(True, "send servername=hostname with secure (Postfix 3.4 or later)")
    shadow: bool = key(
        False, "decide, log and count, but answer NOTFOUND (main.cf's default applies)"
    )


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """``server:``: where Postfix connects, limits, logging, metrics, privileges."""

    listen: tuple[ListenAddress, ...] = key(
        (),
        "where Postfix connects: host:port, [v6]:port or unix:/path, several allowed;"
        " under systemd socket activation the passed sockets are used instead",
        yaml='["127.0.0.1:8642"]',
    )
    socket_mode: int = key(0o666, "permissions of unix sockets", yaml='"0666"')
    socket_owner: str | None = key(None, "owner of unix sockets (a user name)", example="postfix")
    socket_group: str | None = key(None, "group of unix sockets (a group name)", example="postfix")
    max_connections: int = key(
        1024, "open socketmap connections at most; a newcomer beyond it evicts the longest idle one"
    )
    idle_timeout: float = key(300.0, "seconds before an idle Postfix connection is closed")
    request_timeout: float = key(
        20.0, "seconds one answer may take; past it Postfix gets TEMP and retries"
    )
    log_level: str = key("info", "debug, info, warning or error")
    log_format: str = key("text", "text, or json: one object per line with separate fields")
    metrics_listen: str | None = key(
        None,
        "host:port of the HTTP listener for /metrics and /healthz; off when not set",
        sample='"127.0.0.1:8643"',
    )
    user: str | None = key(
        None,
        "started as root: bind, then run as this user (unset under systemd's DynamicUser=)",
        example="tlspolicy",
    )
    group: str | None = key(None, "the group to run as with user", example="tlspolicy")
    workers: int = key(
        1, "processes answering on the same listeners (server/supervisor.py); 1: no supervisor"
    )


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """``dns:``: the local validating resolver DANE trusts (RFC 7672 §2.1.1)."""

    nameservers: tuple[tuple[str, int], ...] = key(
        (),
        "the local validating resolver: addr, addr:port or [v6]:port;"
        " not set: the nameservers of /etc/resolv.conf",
        yaml=UNSET,
        sample='["127.0.0.1"]',
    )
    timeout: float = key(2.0, "seconds for one lookup, all nameservers together")
    udp_size: int = key(DNS_UDP_SIZE, "EDNS0 UDP payload size, 512 to 4096; TCP on truncation")
    concurrency: int = key(DNS_CONCURRENCY, "MX hosts of one domain examined at once")
    selfcheck: bool = key(True, "check at start and periodically that the resolver validates")
    selfcheck_secure_name: str = key("isc.org", "a signed name that must come back authentic")
    selfcheck_bogus_name: str = key("dnssec-failed.org", "a broken signed name that must fail")
    selfcheck_interval: float = key(600.0, "seconds between two self-checks")
    on_validation_failure: ValidationFailure = key(
        ValidationFailure.CONTINUE,
        "while the resolver does not validate: continue (DANE domains look unsigned;"
        " logged, /healthz 503) or temp (defer every lookup; needs selfcheck)",
    )
    trust_remote_resolver: bool = key(
        False,
        "trust the DNSSEC status (AD bit) of a resolver that is not on loopback without a"
        " warning: only for a resolver on a trusted link (RFC 7672 §1.3 asks for a local one)",
    )


@dataclass(frozen=True, slots=True)
class MtaStsConfig:
    """``mta_sts:``: fetching and re-checking policies (RFC 8461)."""

    ca_file: str | None = key(
        None, "PEM bundle to trust for policy hosts; not set: the system store",
        example="/etc/ssl/certs/ca-certificates.crt",
    )  # fmt: skip
    allow_private_addresses: bool = key(
        False, "fetch from policy hosts on loopback or private addresses (test labs only)"
    )
    timeout: float = key(10.0, "seconds for one policy fetch (DNS, TLS, headers, body); at most 60")
    recheck_interval: float = key(60.0, "re-check a domain's _mta-sts TXT id at most this often")
    fetch_backoff: float = key(
        FETCH_BACKOFF_S, "seconds before a failed fetch is retried; at least 300 (RFC 8461 §3.3)"
    )
    dns_failure: DnsFailure = key(
        DnsFailure.NOTFOUND, "the _mta-sts TXT lookup failed, nothing cached: notfound or temp"
    )


@dataclass(frozen=True, slots=True)
class DaneConfig:
    """``dane:``: DANE lookups (RFC 7672) and how long their results are kept."""

    enabled: bool = key(True, "look up DANE first; false: MTA-STS only")
    min_ttl: int = key(DANE_MIN_TTL_S, "results are kept for the smallest TTL seen, at least this")
    max_ttl: int = key(DANE_MAX_TTL_S, "... and at most this many seconds")
    negative_ttl: int = key(DANE_NEGATIVE_TTL_S, "seconds to keep a no-DANE result without a TTL")


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """``cache:``: where policies are kept, shared by servers and the admin commands."""

    backend: BackendName = key(BackendName.SQLITE, "memory, sqlite, redis or postgres")
    path: str = key(
        "",
        "the sqlite file; not set: cache.sqlite3 in $STATE_DIRECTORY (systemd),"
        " /var/lib/tlspolicy as root, else ~/.local/state/tlspolicy",
        yaml="(see description)",
        example="/var/lib/tlspolicy/cache.sqlite3",
    )
    url: str | None = key(
        None, "redis://, rediss://, redis+sentinel:// or postgresql:// URL of a shared cache",
        example="redis://127.0.0.1:6379/0",
    )  # fmt: skip
    max_entries: int = key(200000, "domains kept at most; the least recently used go first")
    hot_entries: int = key(20000, "entries of the in-process layer in front of every backend")
    hot_ttl: float = key(5.0, "seconds the in-process copy of a shared entry may be stale")
    refresh_ahead: bool = key(True, "refresh used entries in the background before they expire")
    refresh_before: float = key(0.2, "... in this last fraction of their lifetime")
    refresh_concurrency: int = key(8, "background refreshes at once")


def default_maps() -> dict[str, MapProfile]:
    return {"QUERY": MapProfile(tlsrpt=False), "QUERYwithTLSRPT": MapProfile(tlsrpt=True)}


@dataclass(frozen=True, slots=True)
class PostfixConfig:
    """Where to ask the Postfix beside us for its version and policy maps (``postconf``)."""

    postconf: str = key("postconf", 'the postconf command; "" disables the check')
    config_directory: str | None = key(
        None, "Postfix's configuration directory (postconf -c)", example="/etc/postfix"
    )


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    mta_sts: MtaStsConfig = field(default_factory=MtaStsConfig)
    dane: DaneConfig = field(default_factory=DaneConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    maps: Mapping[str, MapProfile] = field(default_factory=default_maps)
    source: str = "<defaults>"
    tlsrpt: TlsrptConfig = field(default_factory=TlsrptConfig)
    postfix: PostfixConfig = field(default_factory=PostfixConfig)
    overrides: tuple[Override, ...] = ()  # ``overrides:``, for those who keep policy in git
    origin: ConfigOrigin = ConfigOrigin.DATA

    def lookup_tag(self) -> str:
        """A short fingerprint of the settings lookups depend on (``dns:``, ``mta_sts:``):
        failures stored under other settings are not believed (``mtasts.state``)."""
        text = repr((self.dns, self.mta_sts))
        return hashlib.sha256(text.encode()).hexdigest()[:LOOKUP_TAG_CHARS]

    def profile(self, name: str) -> MapProfile | None:
        found = self.maps.get(name)
        if found is not None:
            return found
        lowered = name.lower()
        for map_name, value in self.maps.items():
            if map_name.lower() == lowered:
                return value
        return None


def default_state_dir() -> Path:
    """Where the embedded cache lives when ``cache.path`` is not set."""
    if os.environ.get("STATE_DIRECTORY"):  # systemd StateDirectory=
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/tlspolicy")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tlspolicy"
