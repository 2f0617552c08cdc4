"""cache.packing: an entry packed and unpacked is the same entry, and much smaller."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from tests.unit.cache.helpers import make_entry, make_sts_entry
from tlspolicy.cache.backend import encode_entry
from tlspolicy.cache.entry import CacheEntry
from tlspolicy.cache.packing import pack, unpack
from tlspolicy.dane.result import HostResult

NOW = 1_750_000_000.0


def _round_trip(entry: CacheEntry) -> CacheEntry:
    return unpack(pack(entry), entry.domain, entry.used_at, entry.hits)


def test_pack_round_trips_both_branches() -> None:
    entry = make_sts_entry("a.example", NOW)
    assert _round_trip(entry) == entry


def test_pack_leaves_out_domain_and_counters() -> None:
    entry = make_entry("a.example", NOW, hits=3)
    packed = pack(entry)
    assert pack(replace(entry, domain="other.example", hits=9, used_at=NOW + 1)) == packed
    assert unpack(packed, "other.example", NOW + 1, 9) == replace(
        entry, domain="other.example", hits=9, used_at=NOW + 1
    )


def test_packed_entry_is_a_fraction_of_its_stored_text() -> None:
    hosts = tuple(
        HostResult(f"mx{i}.mail-exchanger.example.net", "secure",
                   f"_25._tcp.mx{i}.mail-exchanger.example.net", "secure", 1, 0,
                   "1 usable TLSA records")
        for i in (1, 2)
    )  # fmt: skip
    base = make_sts_entry("a.example", NOW)
    assert base.dane is not None
    entry = replace(base, dane=replace(base.dane, result=replace(base.dane.result, hosts=hosts)))
    assert _round_trip(entry) == entry
    assert len(pack(entry)) * 4 < len(encode_entry(entry).encode())


@given(
    host=st.text(min_size=1, max_size=60),
    detail=st.text(max_size=80),
    checked_at=st.floats(allow_nan=False),
    hits=st.integers(min_value=0, max_value=2**40),
)
def test_pack_round_trips_any_text_and_time(
    host: str, detail: str, checked_at: float, hits: int
) -> None:
    base = make_entry("xn--bcher-kva.example", NOW, hits=hits)
    assert base.dane is not None
    result = replace(base.dane.result, hosts=(HostResult(host, "secure", detail=detail),))
    entry = replace(base, dane=replace(base.dane, result=result, checked_at=checked_at))
    assert _round_trip(entry) == entry
