"""Configuration: YAML in, frozen dataclasses out, every problem named by its key.

``load_config(path)`` reads a file (``-c``, else ``TLSPOLICY_CONFIG``, else
``/etc/tlspolicy/tlspolicy.yml``), ``parse_config(data)`` validates a mapping; both raise
``ConfigError("dns.timeout: must be a positive number")`` style messages and never let a
traceback reach the operator. Unknown keys are errors (a typo must not silently fall back
to a default). Every key has an embedded default, so no file at all is a valid setup.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tlspolicy.config.addresses import parse_listen, parse_nameserver
from tlspolicy.config.checks import (
    Section,
    boolean,
    choice,
    domain_name,
    enum_of,
    file_mode,
    fraction,
    list_of,
    needs_extra,
    optional_string,
    positive,
    positive_int,
    string,
)
from tlspolicy.config.defaults import (
    FETCH_BACKOFF_S,
    MAX_FETCH_TIMEOUT_S,
)
from tlspolicy.config.overrides import parse_overrides
from tlspolicy.config.schema import (
    BackendName,
    CacheConfig,
    Config,
    ConfigOrigin,
    DaneConfig,
    DnsConfig,
    DnsFailure,
    MapProfile,
    MtaStsConfig,
    PostfixConfig,
    ServerConfig,
    ValidationFailure,
    default_maps,
    default_state_dir,
)
from tlspolicy.config.tlsrpt import parse_tlsrpt
from tlspolicy.errors import ConfigError

T = TypeVar("T")

# The configuration file when neither -c nor the environment variable names one.
DEFAULT_CONFIG_PATH = "/etc/tlspolicy/tlspolicy.yml"
CONFIG_ENV = "TLSPOLICY_CONFIG"

DEFAULT_LISTEN = ("127.0.0.1:8642",)
DEFAULT_PORT = 8642


# --- validation helpers -------------------------------------------------------------


# --- sections ------------------------------------------------------------------------


def _server(data: Any) -> ServerConfig:
    s = Section(data, "server")
    d = ServerConfig()
    listen = s.get("listen", None, lambda k, v: list_of(k, v, parse_listen))
    if listen is None:
        listen = tuple(parse_listen("server.listen", x) for x in DEFAULT_LISTEN)
    config = ServerConfig(
        listen=listen,
        socket_mode=s.get("socket_mode", d.socket_mode, file_mode),
        socket_owner=s.get("socket_owner", d.socket_owner, optional_string),
        socket_group=s.get("socket_group", d.socket_group, optional_string),
        max_connections=s.get("max_connections", d.max_connections, positive_int),
        idle_timeout=s.get("idle_timeout", d.idle_timeout, positive),
        request_timeout=s.get("request_timeout", d.request_timeout, positive),
        log_level=s.get("log_level", d.log_level, choice("debug", "info", "warning", "error")),
        log_format=s.get("log_format", d.log_format, choice("text", "json")),
        metrics_listen=s.get(
            "metrics_listen", d.metrics_listen, lambda k, v: str(parse_listen(k, v))
        ),
        user=s.get("user", d.user, optional_string),
        group=s.get("group", d.group, optional_string),
        workers=s.get("workers", d.workers, positive_int),
    )
    s.finish()
    return config


def _dns(data: Any) -> DnsConfig:
    s = Section(data, "dns")
    d = DnsConfig()
    config = DnsConfig(
        nameservers=s.get(
            "nameservers", d.nameservers, lambda k, v: list_of(k, v, parse_nameserver)
        ),
        timeout=s.get("timeout", d.timeout, positive),
        udp_size=s.get("udp_size", d.udp_size, positive_int),
        concurrency=s.get("concurrency", d.concurrency, positive_int),
        selfcheck=s.get("selfcheck", d.selfcheck, boolean),
        selfcheck_secure_name=s.get("selfcheck_secure_name", d.selfcheck_secure_name, domain_name),
        selfcheck_bogus_name=s.get("selfcheck_bogus_name", d.selfcheck_bogus_name, domain_name),
        selfcheck_interval=s.get("selfcheck_interval", d.selfcheck_interval, positive),
        on_validation_failure=s.get(
            "on_validation_failure", d.on_validation_failure, enum_of(ValidationFailure)
        ),
        trust_remote_resolver=s.get("trust_remote_resolver", d.trust_remote_resolver, boolean),
    )
    if not 512 <= config.udp_size <= 4096:
        raise ConfigError("dns.udp_size: must be between 512 and 4096")
    if config.on_validation_failure is ValidationFailure.TEMP and not config.selfcheck:
        raise ConfigError("dns.on_validation_failure: temp needs dns.selfcheck: true")
    s.finish()
    return config


def _mta_sts(data: Any) -> MtaStsConfig:
    s = Section(data, "mta_sts")
    d = MtaStsConfig()

    def ca_file(key: str, value: Any) -> str | None:
        path = optional_string(key, value)
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"{key}: file {path} does not exist")
        return path

    config = MtaStsConfig(
        ca_file=s.get("ca_file", d.ca_file, ca_file),
        allow_private_addresses=s.get(
            "allow_private_addresses", d.allow_private_addresses, boolean
        ),
        timeout=s.get("timeout", d.timeout, positive),
        recheck_interval=s.get("recheck_interval", d.recheck_interval, positive),
        fetch_backoff=s.get("fetch_backoff", d.fetch_backoff, positive),
        dns_failure=s.get("dns_failure", d.dns_failure, enum_of(DnsFailure)),
    )
    if config.timeout > MAX_FETCH_TIMEOUT_S:
        raise ConfigError(
            f"mta_sts.timeout: must be at most {MAX_FETCH_TIMEOUT_S:.0f} seconds (RFC 8461 §3.3)"
        )
    if config.fetch_backoff < FETCH_BACKOFF_S:
        raise ConfigError(
            f"mta_sts.fetch_backoff: must be at least {FETCH_BACKOFF_S:.0f} seconds (RFC 8461 §3.3)"
        )
    s.finish()
    return config


def _dane(data: Any) -> DaneConfig:
    s = Section(data, "dane")
    d = DaneConfig()
    config = DaneConfig(
        enabled=s.get("enabled", d.enabled, boolean),
        min_ttl=s.get("min_ttl", d.min_ttl, positive_int),
        max_ttl=s.get("max_ttl", d.max_ttl, positive_int),
        negative_ttl=s.get("negative_ttl", d.negative_ttl, positive_int),
    )
    if config.min_ttl > config.max_ttl:
        raise ConfigError("dane.min_ttl: must not be larger than dane.max_ttl")
    s.finish()
    return config


def _cache(data: Any) -> CacheConfig:
    s = Section(data, "cache")
    d = CacheConfig()
    backend = s.get("backend", d.backend, enum_of(BackendName))
    config = CacheConfig(
        backend=backend,
        path=s.get("path", "", string) or str(default_state_dir() / "cache.sqlite3"),
        url=s.get("url", d.url, optional_string),
        max_entries=s.get("max_entries", d.max_entries, positive_int),
        hot_entries=s.get("hot_entries", d.hot_entries, positive_int),
        hot_ttl=s.get("hot_ttl", d.hot_ttl, positive),
        refresh_ahead=s.get("refresh_ahead", d.refresh_ahead, boolean),
        refresh_before=s.get("refresh_before", d.refresh_before, fraction),
        refresh_concurrency=s.get("refresh_concurrency", d.refresh_concurrency, positive_int),
    )
    if backend in ("redis", "postgres") and not config.url:
        raise ConfigError(f"cache.url: required for the {backend} backend")
    if (
        backend == "redis"
        and config.url
        and not config.url.startswith(("redis://", "rediss://", "redis+sentinel://", "unix://"))
    ):
        raise ConfigError("cache.url: must start with redis://, rediss://, redis+sentinel://")
    if (
        backend == "postgres"
        and config.url
        and not config.url.startswith(("postgresql://", "postgres://"))
    ):
        raise ConfigError("cache.url: must start with postgresql://")
    if backend == "redis":
        needs_extra("cache.backend", "the redis backend", "redis", "redis")
    if backend == "postgres":
        needs_extra("cache.backend", "the postgres backend", "postgres", "asyncpg")
    s.finish()
    return config


def _maps(data: Any) -> dict[str, MapProfile]:
    if data is None:
        return default_maps()
    if not isinstance(data, Mapping) or not data:
        raise ConfigError("maps: must be a non-empty mapping of map name to profile")
    maps: dict[str, MapProfile] = {}
    for name, profile in data.items():
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ConfigError(f"maps: {name!r} is not a valid map name (no spaces)")
        s = Section(profile, f"maps.{name}")
        maps[name] = MapProfile(
            tlsrpt=s.get("tlsrpt", False, boolean),
            strict_testing=s.get("strict_testing", False, boolean),
            servername=s.get("servername", True, boolean),
            shadow=s.get("shadow", False, boolean),
        )
        s.finish()
    return maps


def _postfix(data: Any) -> PostfixConfig:
    s = Section(data, "postfix")
    d = PostfixConfig()
    config = PostfixConfig(
        postconf=s.get("postconf", d.postconf, lambda k, v: "" if v == "" else string(k, v)),
        config_directory=s.get("config_directory", d.config_directory, optional_string),
    )
    s.finish()
    return config


def parse_config(data: Any, *, source: str = "<data>") -> Config:
    top = Section(data, "")
    cache = _cache(top.get("cache", None, lambda k, v: v))
    config = Config(
        server=_server(top.get("server", None, lambda k, v: v)),
        dns=_dns(top.get("dns", None, lambda k, v: v)),
        mta_sts=_mta_sts(top.get("mta_sts", None, lambda k, v: v)),
        dane=_dane(top.get("dane", None, lambda k, v: v)),
        cache=cache,
        maps=_maps(top.get("maps", None, lambda k, v: v)),
        source=source,
        tlsrpt=parse_tlsrpt(top.get("tlsrpt", None, lambda k, v: v), cache_path=cache.path),
        postfix=_postfix(top.get("postfix", None, lambda k, v: v)),
        overrides=parse_overrides(top.get("overrides", None, lambda k, v: v)),
    )
    top.finish()
    return config


def config_location(
    path: str | None, environ: Mapping[str, str] | None = None
) -> tuple[str, ConfigOrigin]:
    """The file to read and why: ``-c`` first, then ``TLSPOLICY_CONFIG``, then the default."""
    if path is not None:
        return path, ConfigOrigin.OPTION
    named = (os.environ if environ is None else environ).get(CONFIG_ENV, "")
    if named:
        return named, ConfigOrigin.ENVIRONMENT
    return DEFAULT_CONFIG_PATH, ConfigOrigin.DEFAULT


def load_config(path: str | None = None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration file (see ``config_location``).

    A file named by ``-c`` or ``TLSPOLICY_CONFIG`` must exist: the operator asked for it. No
    file at the default path means the embedded defaults (``origin`` says so, and every
    command prints it), so that ``serve`` runs on a fresh host without one.
    """
    where, origin = config_location(path, environ)
    try:
        text = Path(where).read_text(encoding="utf-8")
    except FileNotFoundError:
        if origin is ConfigOrigin.DEFAULT:
            return replace(parse_config({}, source="<defaults>"), origin=ConfigOrigin.EMBEDDED)
        named = f" (named by {CONFIG_ENV})" if origin is ConfigOrigin.ENVIRONMENT else ""
        raise ConfigError(f"{where}{named}: does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}: {problem}{at}") from None
    try:
        return replace(parse_config(data, source=where), origin=origin)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def describe_origin(config: Config) -> str:
    """One line for stderr and logs: which file, and why that one."""
    if config.origin is ConfigOrigin.EMBEDDED:
        return f"no configuration file ({DEFAULT_CONFIG_PATH} does not exist): embedded defaults"
    if config.origin is ConfigOrigin.DATA:
        return f"configuration {config.source}"
    why = {
        ConfigOrigin.OPTION: "-c",
        ConfigOrigin.ENVIRONMENT: CONFIG_ENV,
        ConfigOrigin.DEFAULT: "the default path",
    }[config.origin]
    return f"configuration file {config.source} ({why})"
