"""The configuration: its schema (one frozen dataclass per section, every key's default),
loading and checking YAML, and the ``overrides:`` and ``tlsrpt:`` sections.

Imports nothing of the server above it. The names below are what the rest of the code uses;
``schema`` holds the values, ``load`` reads a file into them, ``checks`` and ``addresses``
judge single keys, ``defaults`` holds the numbers other packages share.
"""

from __future__ import annotations

from tlspolicy.config.load import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    config_location,
    describe_origin,
    load_config,
    parse_config,
)
from tlspolicy.config.schema import (
    BackendName,
    CacheConfig,
    Config,
    ConfigOrigin,
    DaneConfig,
    DnsConfig,
    DnsFailure,
    ListenAddress,
    ListenKind,
    MapProfile,
    MtaStsConfig,
    PostfixConfig,
    ServerConfig,
    ValidationFailure,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "BackendName",
    "CacheConfig",
    "Config",
    "ConfigOrigin",
    "DaneConfig",
    "DnsConfig",
    "DnsFailure",
    "ListenAddress",
    "ListenKind",
    "MapProfile",
    "MtaStsConfig",
    "PostfixConfig",
    "ServerConfig",
    "ValidationFailure",
    "config_location",
    "describe_origin",
    "load_config",
    "parse_config",
]
