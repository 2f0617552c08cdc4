"""The shared contract helpers: entry codec and expiry after use."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.unit.cache.helpers import make_entry, make_sts_entry
from tlspolicy.cache.backend import decode_entry, encode_entry, keep_until_after_use
from tlspolicy.cache.entry import RETAIN_AFTER_EXPIRY_S, CacheEntry

NOW = 1_750_000_000.0


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(make_entry("a.example", NOW, hits=3), id="dane"),
        pytest.param(make_sts_entry("b.example", NOW), id="dane-and-sts"),
    ],
)
def test_encode_entry_round_trips(entry: CacheEntry) -> None:
    assert decode_entry(encode_entry(entry), entry.domain) == entry
    assert decode_entry(encode_entry(entry).encode(), entry.domain) == entry


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(None, id="absent"),
        pytest.param("", id="empty"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param("{", id="truncated"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="deeply-nested"),
        pytest.param('"a string"', id="json-string"),
        pytest.param('{"v": 2, "domain": "a.example"}', id="unknown-version"),
        pytest.param('{"v": 1}', id="no-domain"),
        pytest.param('{"v": 1, "domain": "other.example"}', id="other-domain"),
        pytest.param('{"v": 1, "domain": "a.example", "dane": []}', id="dane-wrong-type"),
        pytest.param('{"v": 1, "domain": "a.example", "hits": "x"}', id="hits-not-int"),
        pytest.param(
            '{"v": 1, "domain": "a.example", "sts": {"policy": "junk", "policy_id": "1"}}',
            id="sts-policy-does-not-parse",
        ),
    ],
)
def test_decode_entry_returns_none_for_garbage(text: str | bytes | None) -> None:
    assert decode_entry(text, "a.example") is None


def test_keep_until_after_use_matches_cache_entry() -> None:
    entry = make_entry("a.example", NOW, dane_ttl=300, used_at=NOW - 10_000)
    for used_at in (NOW - 20_000, NOW, NOW + 5_000):
        later = replace(entry, used_at=used_at)
        expected = max(entry.keep_until(), later.keep_until())
        assert keep_until_after_use(entry.keep_until(), used_at) == expected
    assert keep_until_after_use(0.0, NOW) == NOW + RETAIN_AFTER_EXPIRY_S
