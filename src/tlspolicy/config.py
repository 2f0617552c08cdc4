"""Configuration: YAML in, frozen dataclasses out, every problem named by its key.

``load_config(path)`` reads a file, ``parse_config(data)`` validates a mapping; both raise
``ConfigError("dns.timeout: must be a positive number")`` style messages and never let a
traceback reach the operator. Unknown keys are errors (a typo must not silently fall back
to a default). Every key has an embedded default, so no file at all is a valid setup.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tlspolicy.errors import ConfigError

T = TypeVar("T")

DEFAULT_LISTEN = ("127.0.0.1:8642",)
DEFAULT_PORT = 8642


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """``tcp`` (host, port) or ``unix`` (path)."""

    kind: str
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


@dataclass(frozen=True, slots=True)
class DnsConfig:
    nameservers: tuple[tuple[str, int], ...] = ()  # empty: read /etc/resolv.conf
    timeout: float = 2.0
    udp_size: int = 1232
    concurrency: int = 4
    selfcheck: bool = True
    selfcheck_secure_name: str = "isc.org"
    selfcheck_bogus_name: str = "dnssec-failed.org"
    selfcheck_interval: float = 600.0


@dataclass(frozen=True, slots=True)
class MtaStsConfig:
    ca_file: str | None = None
    allow_private_addresses: bool = False
    timeout: float = 10.0
    recheck_interval: float = 60.0
    fetch_backoff: float = 300.0
    dns_failure: str = "notfound"  # what a failed TXT lookup with nothing cached answers


@dataclass(frozen=True, slots=True)
class DaneConfig:
    enabled: bool = True
    min_ttl: int = 180
    max_ttl: int = 86400
    negative_ttl: int = 1800


@dataclass(frozen=True, slots=True)
class CacheConfig:
    backend: str = "sqlite"
    path: str = ""
    url: str | None = None
    max_entries: int = 200000
    hot_entries: int = 20000
    hot_ttl: float = 5.0
    refresh_ahead: bool = True
    refresh_before: float = 0.2
    refresh_concurrency: int = 8


def _default_maps() -> dict[str, MapProfile]:
    return {"QUERY": MapProfile(tlsrpt=False), "QUERYwithTLSRPT": MapProfile(tlsrpt=True)}


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    mta_sts: MtaStsConfig = field(default_factory=MtaStsConfig)
    dane: DaneConfig = field(default_factory=DaneConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    maps: Mapping[str, MapProfile] = field(default_factory=_default_maps)
    source: str = "<defaults>"

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


# --- validation helpers -------------------------------------------------------------


class _Section:
    """Reads one mapping, remembering which keys were used, to report unknown ones."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or 'configuration'}: must be a mapping")
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, default: T, check: Callable[[str, Any], T]) -> T:
        self.used.add(name)
        if name not in self.data or (self.data[name] is None and default is None):
            return default
        return check(self.key(name), self.data[name])

    def finish(self) -> None:
        unknown = sorted(str(k) for k in self.data if k not in self.used)
        if unknown:
            raise ConfigError(f"{self.key(unknown[0])}: unknown key")


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key}: must be true or false")


def _positive(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{key}: must be a positive number")
    return float(value)


def _fraction(key: str, value: Any) -> float:
    number = _positive(key, value)
    if number >= 1:
        raise ConfigError(f"{key}: must be a number between 0 and 1")
    return number


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key}: must be a positive integer")
    return value


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be a non-empty string")
    return value


def _optional_string(key: str, value: Any) -> str | None:
    return None if value is None else _string(key, value)


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(choices)}")
        return str(value)

    return check


def _mode(key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        text = oct(value)[2:] if value > 0o777 or value < 0 else format(value, "o")
        # YAML 1.1 reads 0666 as octal already; 666 written bare means the digits 6,6,6.
        value = str(value) if value > 0o777 else text
    if isinstance(value, str) and value and all(c in "01234567" for c in value):
        mode = int(value, 8)
        if mode <= 0o777:
            return mode
    raise ConfigError(f'{key}: must be an octal permission string such as "0660"')


def parse_listen(key: str, value: Any) -> ListenAddress:
    """``host:port``, ``[v6]:port``, ``unix:PATH`` (or a bare absolute path)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be a string such as 127.0.0.1:8642 or unix:/path")
    if value.startswith("unix:") or value.startswith("/"):
        path = value[5:] if value.startswith("unix:") else value
        if not path.startswith("/"):
            raise ConfigError(f"{key}: unix socket path must be absolute")
        return ListenAddress(kind="unix", path=path)
    if value.startswith("["):
        host, sep, port_text = value[1:].partition("]:")
        if not sep:
            raise ConfigError(f"{key}: IPv6 addresses are written [addr]:port")
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise ConfigError(f"{key}: missing port (host:port)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host not in ("localhost", "*", ""):
            raise ConfigError(f"{key}: {host!r} is not an IP address") from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{key}: port must be a number from 1 to 65535")
    return ListenAddress(kind="tcp", host=host or "0.0.0.0", port=int(port_text))


def parse_nameserver(key: str, value: Any) -> tuple[str, int]:
    """``addr``, ``addr:port`` (IPv4), ``[v6]:port`` or a bare IPv6 address."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be an address such as 127.0.0.1 or 127.0.0.1:53")
    host, port = value, 53
    if value.startswith("["):
        host, _, port_text = value[1:].partition("]")
        if port_text:
            if not port_text.startswith(":") or not port_text[1:].isdigit():
                raise ConfigError(f"{key}: expected [addr]:port")
            port = int(port_text[1:])
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
        if not port_text.isdigit():
            raise ConfigError(f"{key}: port must be a number")
        port = int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{key}: {host!r} is not an IP address") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{key}: port must be a number from 1 to 65535")
    return host, port


def _domain(key: str, value: Any) -> str:
    text = _string(key, value).lower().removesuffix(".")
    labels = text.split(".")
    if not all(0 < len(label) < 64 for label in labels) or len(text) > 253:
        raise ConfigError(f"{key}: must be a domain name")
    return text


def _list(key: str, value: Any, item: Callable[[str, Any], T]) -> tuple[T, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key}: must be a non-empty list")
    return tuple(item(f"{key}[{i}]", v) for i, v in enumerate(value))


# --- sections ------------------------------------------------------------------------


def _server(data: Any) -> ServerConfig:
    s = _Section(data, "server")
    d = ServerConfig()
    listen = s.get("listen", None, lambda k, v: _list(k, v, parse_listen))
    if listen is None:
        listen = tuple(parse_listen("server.listen", x) for x in DEFAULT_LISTEN)
    config = ServerConfig(
        listen=listen,
        socket_mode=s.get("socket_mode", d.socket_mode, _mode),
        socket_owner=s.get("socket_owner", d.socket_owner, _optional_string),
        socket_group=s.get("socket_group", d.socket_group, _optional_string),
        max_connections=s.get("max_connections", d.max_connections, _positive_int),
        idle_timeout=s.get("idle_timeout", d.idle_timeout, _positive),
        request_timeout=s.get("request_timeout", d.request_timeout, _positive),
        log_level=s.get("log_level", d.log_level, _choice("debug", "info", "warning", "error")),
        log_format=s.get("log_format", d.log_format, _choice("text", "json")),
        metrics_listen=s.get(
            "metrics_listen", d.metrics_listen, lambda k, v: str(parse_listen(k, v))
        ),
        user=s.get("user", d.user, _optional_string),
        group=s.get("group", d.group, _optional_string),
    )
    s.finish()
    return config


def _dns(data: Any) -> DnsConfig:
    s = _Section(data, "dns")
    d = DnsConfig()
    config = DnsConfig(
        nameservers=s.get("nameservers", d.nameservers, lambda k, v: _list(k, v, parse_nameserver)),
        timeout=s.get("timeout", d.timeout, _positive),
        udp_size=s.get("udp_size", d.udp_size, _positive_int),
        concurrency=s.get("concurrency", d.concurrency, _positive_int),
        selfcheck=s.get("selfcheck", d.selfcheck, _bool),
        selfcheck_secure_name=s.get("selfcheck_secure_name", d.selfcheck_secure_name, _domain),
        selfcheck_bogus_name=s.get("selfcheck_bogus_name", d.selfcheck_bogus_name, _domain),
        selfcheck_interval=s.get("selfcheck_interval", d.selfcheck_interval, _positive),
    )
    if not 512 <= config.udp_size <= 4096:
        raise ConfigError("dns.udp_size: must be between 512 and 4096")
    s.finish()
    return config


def _mta_sts(data: Any) -> MtaStsConfig:
    s = _Section(data, "mta_sts")
    d = MtaStsConfig()

    def ca_file(key: str, value: Any) -> str | None:
        path = _optional_string(key, value)
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"{key}: file {path} does not exist")
        return path

    config = MtaStsConfig(
        ca_file=s.get("ca_file", d.ca_file, ca_file),
        allow_private_addresses=s.get("allow_private_addresses", d.allow_private_addresses, _bool),
        timeout=s.get("timeout", d.timeout, _positive),
        recheck_interval=s.get("recheck_interval", d.recheck_interval, _positive),
        fetch_backoff=s.get("fetch_backoff", d.fetch_backoff, _positive),
        dns_failure=s.get("dns_failure", d.dns_failure, _choice("notfound", "temp")),
    )
    if config.timeout > 60:
        raise ConfigError("mta_sts.timeout: must be at most 60 seconds (RFC 8461 §3.3)")
    if config.fetch_backoff < 300:
        raise ConfigError("mta_sts.fetch_backoff: must be at least 300 seconds (RFC 8461 §3.3)")
    s.finish()
    return config


def _dane(data: Any) -> DaneConfig:
    s = _Section(data, "dane")
    d = DaneConfig()
    config = DaneConfig(
        enabled=s.get("enabled", d.enabled, _bool),
        min_ttl=s.get("min_ttl", d.min_ttl, _positive_int),
        max_ttl=s.get("max_ttl", d.max_ttl, _positive_int),
        negative_ttl=s.get("negative_ttl", d.negative_ttl, _positive_int),
    )
    if config.min_ttl > config.max_ttl:
        raise ConfigError("dane.min_ttl: must not be larger than dane.max_ttl")
    s.finish()
    return config


def _cache(data: Any) -> CacheConfig:
    s = _Section(data, "cache")
    d = CacheConfig()
    backend = s.get("backend", d.backend, _choice("memory", "sqlite", "redis", "postgres"))
    config = CacheConfig(
        backend=backend,
        path=s.get("path", "", _string) or str(default_state_dir() / "cache.sqlite3"),
        url=s.get("url", d.url, _optional_string),
        max_entries=s.get("max_entries", d.max_entries, _positive_int),
        hot_entries=s.get("hot_entries", d.hot_entries, _positive_int),
        hot_ttl=s.get("hot_ttl", d.hot_ttl, _positive),
        refresh_ahead=s.get("refresh_ahead", d.refresh_ahead, _bool),
        refresh_before=s.get("refresh_before", d.refresh_before, _fraction),
        refresh_concurrency=s.get("refresh_concurrency", d.refresh_concurrency, _positive_int),
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
    s.finish()
    return config


def _maps(data: Any) -> dict[str, MapProfile]:
    if data is None:
        return _default_maps()
    if not isinstance(data, Mapping) or not data:
        raise ConfigError("maps: must be a non-empty mapping of map name to profile")
    maps: dict[str, MapProfile] = {}
    for name, profile in data.items():
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ConfigError(f"maps: {name!r} is not a valid map name (no spaces)")
        s = _Section(profile, f"maps.{name}")
        maps[name] = MapProfile(
            tlsrpt=s.get("tlsrpt", False, _bool),
            strict_testing=s.get("strict_testing", False, _bool),
            servername=s.get("servername", True, _bool),
        )
        s.finish()
    return maps


def parse_config(data: Any, *, source: str = "<data>") -> Config:
    top = _Section(data, "")
    config = Config(
        server=_server(top.get("server", None, lambda k, v: v)),
        dns=_dns(top.get("dns", None, lambda k, v: v)),
        mta_sts=_mta_sts(top.get("mta_sts", None, lambda k, v: v)),
        dane=_dane(top.get("dane", None, lambda k, v: v)),
        cache=_cache(top.get("cache", None, lambda k, v: v)),
        maps=_maps(top.get("maps", None, lambda k, v: v)),
        source=source,
    )
    top.finish()
    return config


def load_config(path: str | None) -> Config:
    """Read and validate ``path``; ``None`` means the embedded defaults."""
    if path is None:
        return parse_config({}, source="<defaults>")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: {problem}{where}") from None
    try:
        return parse_config(data, source=path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
