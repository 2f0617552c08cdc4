"""The ``redis+sentinel://`` URL grammar and password redaction (no server needed)."""

from __future__ import annotations

import pytest

from tlspolicy.cache.backends.redis_url import SentinelUrl, parse_sentinel_url, redact_url
from tlspolicy.errors import CacheError

GOOD = [
    pytest.param(
        "redis+sentinel://s1.example:26380,s2.example/mymaster",
        SentinelUrl((("s1.example", 26380), ("s2.example", 26379)), "mymaster"),
        id="two-sentinels-default-port",
    ),
    pytest.param(
        "redis+sentinel://:s%40cret@10.0.0.1:5000/cache/3",
        SentinelUrl((("10.0.0.1", 5000),), "cache", db=3, password="s@cret"),
        id="password-and-db",
    ),
    pytest.param(
        "redis+sentinel://app:pw@[2001:db8::1]:26379,[2001:db8::2]/cache/?sentinel_password=sp",
        SentinelUrl(
            (("2001:db8::1", 26379), ("2001:db8::2", 26379)),
            "cache",
            username="app",
            password="pw",
            sentinel_password="sp",
        ),
        id="ipv6-user-sentinel-password",
    ),
]

BAD = [
    pytest.param("redis://h/0", "not a redis", id="other-scheme"),
    pytest.param("redis+sentinel://h1,h2", "service_name", id="no-service"),
    pytest.param("redis+sentinel://h1/", "service_name", id="empty-service"),
    pytest.param("redis+sentinel://h1/svc/x", "not a number", id="bad-db"),
    pytest.param("redis+sentinel://h1/svc/0/extra", "service_name", id="too-deep"),
    pytest.param("redis+sentinel://h1:0/svc", "bad port", id="port-zero"),
    pytest.param("redis+sentinel://h1:http/svc", "bad port", id="port-name"),
    pytest.param("redis+sentinel://,h2/svc", "empty host", id="empty-host"),
    pytest.param("redis+sentinel://[::1/svc", "bad host", id="open-bracket"),
    pytest.param("redis+sentinel://h1/svc?ssl=true", "unknown option", id="unknown-option"),
]


@pytest.mark.parametrize(("url", "expected"), GOOD)
def test_parse_sentinel_url_accepts(url: str, expected: SentinelUrl) -> None:
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize(("url", "why"), BAD)
def test_parse_sentinel_url_rejects(url: str, why: str) -> None:
    with pytest.raises(CacheError, match=why):
        parse_sentinel_url(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("redis://:pw@h:6379/0", "redis://***@h:6379/0", id="password-only"),
        pytest.param("rediss://u:pw@h/0", "rediss://u:***@h/0", id="user-and-password"),
        pytest.param("redis://h:6379/0", "redis://h:6379/0", id="no-credentials"),
        pytest.param(
            "unix:///run/redis.sock?db=1&password=pw", "unix:///run/redis.sock", id="query"
        ),
    ],
)
def test_redact_url_hides_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
