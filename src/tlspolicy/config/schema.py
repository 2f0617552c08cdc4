"""The configuration's values: enums for fixed vocabularies, frozen dataclasses per section
with every embedded default. ``config`` parses YAML into these; other modules import them
from there."""

from __future__ import annotations

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
from tlspolicy.config.overrides import Override
from tlspolicy.config.tlsrpt import TlsrptConfig


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
    tlsrpt: bool = False
    strict_testing: bool = False
    servername: bool = True
    shadow: bool = False  # decide, log and count, but answer NOTFOUND (main.cf applies)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: tuple[ListenAddress, ...] = ()
    socket_mode: int = 0o666
    socket_owner: str | None = None
    socket_group: str | None = None
    max_connections: int = 1024
    idle_timeout: float = 300.0
    request_timeout: float = 20.0
    log_level: str = "info"
    log_format: str = "text"
    metrics_listen: str | None = None
    user: str | None = None
    group: str | None = None
    # Processes accepting on the same listeners (server/supervisor.py); 1: no supervisor.
    workers: int = 1


@dataclass(frozen=True, slots=True)
class DnsConfig:
    nameservers: tuple[tuple[str, int], ...] = ()  # empty: read /etc/resolv.conf
    timeout: float = 2.0
    udp_size: int = DNS_UDP_SIZE
    concurrency: int = DNS_CONCURRENCY
    selfcheck: bool = True
    selfcheck_secure_name: str = "isc.org"
    selfcheck_bogus_name: str = "dnssec-failed.org"
    selfcheck_interval: float = 600.0
    # The self-check finds a resolver that answers without validating: "continue" answers
    # on (DANE domains look unsigned; logged, /healthz 503), "temp" defers every lookup.
    on_validation_failure: ValidationFailure = ValidationFailure.CONTINUE


@dataclass(frozen=True, slots=True)
class MtaStsConfig:
    ca_file: str | None = None
    allow_private_addresses: bool = False
    timeout: float = 10.0
    recheck_interval: float = 60.0
    fetch_backoff: float = FETCH_BACKOFF_S
    dns_failure: DnsFailure = DnsFailure.NOTFOUND


@dataclass(frozen=True, slots=True)
class DaneConfig:
    enabled: bool = True
    min_ttl: int = DANE_MIN_TTL_S
    max_ttl: int = DANE_MAX_TTL_S
    negative_ttl: int = DANE_NEGATIVE_TTL_S


@dataclass(frozen=True, slots=True)
class CacheConfig:
    backend: BackendName = BackendName.SQLITE
    path: str = ""
    url: str | None = None
    max_entries: int = 200000
    hot_entries: int = 20000
    hot_ttl: float = 5.0
    refresh_ahead: bool = True
    refresh_before: float = 0.2
    refresh_concurrency: int = 8


def default_maps() -> dict[str, MapProfile]:
    return {"QUERY": MapProfile(tlsrpt=False), "QUERYwithTLSRPT": MapProfile(tlsrpt=True)}


@dataclass(frozen=True, slots=True)
class PostfixConfig:
    """Where to ask the Postfix beside us for its version and policy maps (``postconf``)."""

    postconf: str = "postconf"  # "" disables the check
    config_directory: str | None = None  # postconf -c


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

    def profile(self, name: str) -> MapProfile | None:
        found = self.maps.get(name)
        if found is not None:
            return found
        lowered = name.lower()
        for key, value in self.maps.items():
            if key.lower() == lowered:
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
