"""Cache entries: the JSON every backend stores, and how long an entry is kept."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.unit.cache.helpers import make_entry, make_sts_entry
from tlspolicy.cache.entry import FORMAT_VERSION, RETAIN_AFTER_EXPIRY_S, CacheEntry

NOW = 1_750_000_000.0


def test_json_round_trip_of_both_branches() -> None:
    entry = replace(make_sts_entry("a.example", NOW), used_at=NOW + 5, hits=3)
    data = entry.to_json()
    assert data["v"] == FORMAT_VERSION
    assert CacheEntry.from_json(data) == entry


def test_keep_until_is_the_latest_lifetime_plus_retention() -> None:
    entry = make_entry("a.example", NOW, dane_ttl=300, used_at=NOW + 1000)
    assert entry.keep_until() == NOW + 1000 + RETAIN_AFTER_EXPIRY_S  # the use is latest
    sts = make_sts_entry("b.example", NOW)
    assert sts.sts is not None
    assert sts.keep_until() == sts.sts.keep_until() + RETAIN_AFTER_EXPIRY_S
    used = entry.with_use(NOW + 2000)
    assert (used.used_at, used.hits) == (NOW + 2000, entry.hits + 1)


@pytest.mark.parametrize("version", [0, 2, None])
def test_other_format_versions_are_refused(version: object) -> None:
    data = make_entry("a.example", NOW).to_json()
    data["v"] = version
    with pytest.raises(ValueError, match="unsupported cache entry version"):
        CacheEntry.from_json(data)
