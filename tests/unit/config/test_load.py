"""The configuration: embedded defaults, every key checked and named, enums, files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tlspolicy.config import (
    CONFIG_ENV,
    BackendName,
    ConfigOrigin,
    DnsFailure,
    MapProfile,
    describe_origin,
    load_config,
    parse_config,
)
from tlspolicy.config.defaults import DANE_MAX_TTL_S, DNS_UDP_SIZE, FETCH_BACKOFF_S
from tlspolicy.errors import ConfigError


def test_config_defaults_without_a_file() -> None:
    config = load_config(None)
    assert config.source == "<defaults>"
    assert [str(a) for a in config.server.listen] == ["127.0.0.1:8642"]
    assert config.cache.backend is BackendName.SQLITE
    assert config.cache.path.endswith("cache.sqlite3")
    assert config.mta_sts.dns_failure is DnsFailure.NOTFOUND
    assert config.mta_sts.fetch_backoff == FETCH_BACKOFF_S
    assert config.dane.max_ttl == DANE_MAX_TTL_S
    assert config.dns.udp_size == DNS_UDP_SIZE
    assert config.maps == {
        "QUERY": MapProfile(tlsrpt=False),
        "QUERYwithTLSRPT": MapProfile(tlsrpt=True),
    }
    assert config.profile("QUERY") == MapProfile() and config.profile("nope") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"nosuch": 1}, "unknown"),
        ({"dns": {"timeout": -1}}, "dns.timeout: must be a positive number"),
        ({"dns": {"timeoutt": 1}}, "dns.timeoutt"),
        (
            {"mta_sts": {"dns_failure": "defer"}},
            "mta_sts.dns_failure: must be one of notfound, temp",
        ),
        ({"mta_sts": {"timeout": 61}}, "mta_sts.timeout: must be at most 60 seconds"),
        ({"mta_sts": {"fetch_backoff": 10}}, "mta_sts.fetch_backoff: must be at least 300 seconds"),
        (
            {"cache": {"backend": "memcached"}},
            "cache.backend: must be one of memory, sqlite, redis, postgres",
        ),
        ({"cache": {"backend": "redis"}}, "cache.url: required for the redis backend"),
        (
            {"cache": {"backend": "postgres", "url": "redis://x"}},
            "cache.url: must start with postgresql://",
        ),
        ({"dane": {"min_ttl": 100, "max_ttl": 50}}, "dane.min_ttl: must not be larger"),
        ({"maps": {}}, "maps: must be a non-empty mapping"),
        ({"maps": {"A B": {}}}, "is not a valid map name"),
        ({"maps": {"Q": {"tlsrpt": "yes"}}}, "maps.Q.tlsrpt"),
        ({"server": {"listen": ["127.0.0.1"]}}, "missing port"),
        ({"server": []}, "server: must be a mapping"),
    ],
)
def test_config_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(data)


def test_config_enums_accept_their_values() -> None:
    config = parse_config({"mta_sts": {"dns_failure": "temp"}, "cache": {"backend": "memory"}})
    assert config.mta_sts.dns_failure is DnsFailure.TEMP
    assert config.cache.backend is BackendName.MEMORY
    assert config.cache.backend == "memory"  # still compares as its text


def test_load_config_file_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text("cache:\n  backend: memory\nmaps:\n  Q: {strict_testing: true}\n")
    config = load_config(str(good))
    assert config.source == str(good)
    assert config.maps == {"Q": MapProfile(strict_testing=True)}
    with pytest.raises(ConfigError):
        load_config(str(tmp_path / "missing.yml"))
    bad = tmp_path / "bad.yml"
    bad.write_text("cache: [unclosed\n")
    with pytest.raises(ConfigError):
        load_config(str(bad))


def test_load_config_finds_the_file_by_option_then_environment_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default, named, given = (tmp_path / n for n in ("default.yml", "env.yml", "given.yml"))
    for path, timeout in ((default, 1), (named, 2), (given, 3)):
        path.write_text(f"dns: {{timeout: {timeout}}}\n")
    monkeypatch.setattr("tlspolicy.config.load.DEFAULT_CONFIG_PATH", str(default))
    config = load_config()
    assert (config.dns.timeout, config.origin, config.source) == (
        1, ConfigOrigin.DEFAULT, str(default)
    )  # fmt: skip
    assert describe_origin(config) == f"configuration file {default} (the default path)"
    monkeypatch.setenv(CONFIG_ENV, str(named))
    config = load_config()
    assert (config.dns.timeout, config.origin) == (2, ConfigOrigin.ENVIRONMENT)
    assert describe_origin(config) == f"configuration file {named} (TLSPOLICY_CONFIG)"
    config = load_config(str(given))
    assert (config.dns.timeout, config.origin) == (3, ConfigOrigin.OPTION)
    assert describe_origin(config) == f"configuration file {given} (-c)"


def test_load_config_without_a_default_file_says_so(tmp_path: Path) -> None:
    config = load_config()  # tests/conftest.py points the default path at nothing
    assert (config.origin, config.source) == (ConfigOrigin.EMBEDDED, "<defaults>")
    assert describe_origin(config).startswith("no configuration file (")
    assert "does not exist): embedded defaults" in describe_origin(config)


def test_load_config_refuses_a_named_file_that_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "missing.yml"
    with pytest.raises(ConfigError, match=f"^{re.escape(str(missing))}: does not exist$"):
        load_config(str(missing))
    monkeypatch.setenv(CONFIG_ENV, str(missing))
    with pytest.raises(ConfigError, match="named by TLSPOLICY_CONFIG"):
        load_config()
