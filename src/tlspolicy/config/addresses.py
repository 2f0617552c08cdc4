"""Addresses in the configuration: listeners (``server.listen``) and nameservers
(``dns.nameservers``), each checked and named by its key."""

from __future__ import annotations

import ipaddress
from typing import Any

from tlspolicy.config.schema import ListenAddress, ListenKind
from tlspolicy.errors import ConfigError


def parse_listen(key: str, value: Any) -> ListenAddress:
    """``host:port``, ``[v6]:port``, ``unix:PATH`` (or a bare absolute path)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be a string such as 127.0.0.1:8642 or unix:/path")
    if value.startswith("unix:") or value.startswith("/"):
        path = value[5:] if value.startswith("unix:") else value
        if not path.startswith("/"):
            raise ConfigError(f"{key}: unix socket path must be absolute")
        return ListenAddress(kind=ListenKind.UNIX, path=path)
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
    return ListenAddress(kind=ListenKind.TCP, host=host or "0.0.0.0", port=int(port_text))


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
