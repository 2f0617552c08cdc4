"""HotLayer (bounded LRU, dirty slots, expiry) and OvertakenReads, without a backend."""

from __future__ import annotations

from dataclasses import replace

from tests.unit.cache.helpers import make_entry, make_sts_entry
from tlspolicy.cache.entry import RETAIN_AFTER_EXPIRY_S
from tlspolicy.cache.hot import HotLayer, OvertakenReads

NOW = 1_750_000_000.0


def test_hot_layer_evicts_least_recently_used() -> None:
    hot = HotLayer(2)
    hot.install(make_entry("a.example", NOW), NOW)
    hot.install(make_entry("b.example", NOW), NOW)
    assert hot.slot("a.example", NOW) is not None  # a lookup alone does not promote
    hot.promote("a.example")
    hot.install(make_entry("c.example", NOW), NOW)
    assert hot.slot("b.example", NOW) is None
    assert hot.slot("a.example", NOW) is not None
    assert hot.slot("c.example", NOW) is not None


def test_hot_layer_capacity_is_at_least_one() -> None:
    hot = HotLayer(0)
    slot = hot.install(make_entry("a.example", NOW), NOW)
    assert hot.slot("a.example", NOW) is slot


def test_hot_layer_slot_records_load_time_and_keep_until() -> None:
    entry = make_entry("a.example", NOW)
    hot = HotLayer(4)
    slot = hot.install(entry, NOW + 5)
    assert hot.entry(slot) == entry
    assert (slot.loaded_at, slot.keep_until) == (NOW + 5, entry.keep_until())
    assert not slot.dirty


def test_hot_layer_drops_expired_slot_when_seen() -> None:
    hot = HotLayer(4)
    entry = make_entry("a.example", NOW, dane_ttl=10)
    hot.install(entry, NOW, dirty=True)
    assert hot.slot("a.example", entry.keep_until()) is not None
    assert hot.slot("a.example", entry.keep_until() + 0.001) is None
    assert hot.dirty_domains() == []
    assert hot.slot("a.example", NOW) is None  # gone, not just hidden


def test_hot_layer_dirty_slots_until_written() -> None:
    hot = HotLayer(4)
    slot = hot.install(make_entry("a.example", NOW), NOW, dirty=True)
    assert hot.dirty_domains() == ["a.example"]
    hot.written(slot)
    assert not slot.dirty
    assert hot.dirty_domains() == []


def test_hot_layer_written_ignores_a_replaced_slot() -> None:
    hot = HotLayer(4)
    old = hot.install(make_entry("a.example", NOW), NOW, dirty=True)
    new = hot.install(make_entry("a.example", NOW + 1), NOW + 1, dirty=True)
    hot.written(old)
    assert new.dirty
    assert hot.dirty_domains() == ["a.example"]


def test_hot_layer_clean_install_clears_dirty_and_eviction_drops_it() -> None:
    hot = HotLayer(1)
    hot.install(make_entry("a.example", NOW), NOW, dirty=True)
    hot.install(make_entry("a.example", NOW), NOW)
    assert hot.dirty_domains() == []
    hot.install(make_entry("a.example", NOW), NOW, dirty=True)
    hot.install(make_entry("b.example", NOW), NOW)  # evicts the dirty a
    assert hot.dirty_domains() == []


def test_hot_layer_forget_discard_and_clear() -> None:
    hot = HotLayer(4)
    for name in ("a", "b", "c"):
        hot.install(make_entry(f"{name}.example", NOW), NOW, dirty=True)
    hot.forget("a.example")
    hot.discard_dirty("b.example")
    assert hot.slot("a.example", NOW) is None
    assert hot.slot("b.example", NOW) is not None
    assert hot.dirty_domains() == ["c.example"]
    hot.clear()
    assert hot.slot("c.example", NOW) is None
    assert hot.dirty_domains() == []


def test_hot_layer_add_uses_merges_counters_and_extends_keep_until() -> None:
    hot = HotLayer(4)
    entry = make_entry("a.example", NOW, hits=2)
    slot = hot.install(entry, NOW)
    later = entry.keep_until() + 50
    hot.add_uses({"a.example": (later, 3), "absent.example": (later, 1)})
    assert hot.entry(slot) == replace(entry, used_at=later, hits=5)
    assert slot.keep_until == later + RETAIN_AFTER_EXPIRY_S
    hot.add_uses({"a.example": (NOW - 100, 1)})  # an older use only adds hits
    assert hot.entry(slot).used_at == later
    assert hot.entry(slot).hits == 6


def test_overtaken_reads_by_a_write_to_the_same_domain() -> None:
    reads = OvertakenReads()
    started = reads.start("a.example")
    reads.wrote("b.example")
    assert reads.finish("a.example", started) is False
    started = reads.start("a.example")
    reads.wrote("a.example")
    assert reads.finish("a.example", started) is True


def test_overtaken_reads_by_a_purge() -> None:
    reads = OvertakenReads()
    started = reads.start("a.example")
    reads.purged()
    assert reads.finish("a.example", started) is True
    assert reads.finish("a.example", reads.start("a.example")) is False


def test_overtaken_reads_a_write_before_the_read_does_not_count() -> None:
    reads = OvertakenReads()
    reads.wrote("a.example")
    started = reads.start("a.example")
    assert reads.finish("a.example", started) is False


def test_overtaken_reads_concurrent_readers_share_the_record() -> None:
    reads = OvertakenReads()
    first = reads.start("a.example")
    reads.wrote("a.example")
    second = reads.start("a.example")
    assert reads.finish("a.example", second) is False  # began after the write
    assert reads.finish("a.example", first) is True
    third = reads.start("a.example")  # the record went with the last reader
    assert reads.finish("a.example", third) is False


def test_hot_layer_keeps_only_the_recently_used_decoded() -> None:
    hot = HotLayer(10, decoded=2)
    entries = [make_sts_entry(f"{name}.example", NOW) for name in "abc"]
    slots = [hot.install(entry, NOW) for entry in entries]
    assert [s.decoded is not None for s in slots] == [False, True, True]
    assert slots[0].packed and not slots[1].packed  # packed when its decoded copy went
    assert hot.entry(slots[0]) == entries[0]  # decoded again, now among the recent
    assert [s.decoded is not None for s in slots] == [True, False, True]
    assert hot.entry(slots[1]) == entries[1]


def test_hot_layer_counters_reach_a_packed_entry() -> None:
    hot = HotLayer(10, decoded=1)
    entry = make_sts_entry("a.example", NOW)
    slot = hot.install(entry, NOW)
    hot.install(make_entry("b.example", NOW), NOW)  # a's decoded copy goes
    hot.add_uses({"a.example": (NOW + 7, 2)})
    assert slot.decoded is None
    assert hot.entry(slot) == replace(entry, used_at=NOW + 7, hits=entry.hits + 2)


def test_hot_layer_entry_of_a_replaced_slot_is_its_own() -> None:
    hot = HotLayer(10, decoded=1)
    old_entry = make_entry("a.example", NOW)
    old = hot.install(old_entry, NOW)
    hot.install(make_entry("b.example", NOW), NOW)
    new_entry = make_entry("a.example", NOW + 1)
    hot.install(new_entry, NOW + 1)
    assert hot.entry(old) == old_entry
    assert hot.entry(hot.slot("a.example", NOW + 1) or old) == new_entry


def test_hot_layer_reread_of_the_same_data_keeps_the_packed_form() -> None:
    hot = HotLayer(10, decoded=1)
    entry = make_sts_entry("a.example", NOW)
    first = hot.install(entry, NOW)
    hot.install(make_entry("b.example", NOW), NOW)  # a is packed
    assert hot.entry(first) == entry  # decoded again (b's copy goes)
    again = hot.install(replace(entry, hits=entry.hits + 4), NOW + 5)  # counters differ only
    assert again.packed is first.packed
    changed = hot.install(make_entry("a.example", NOW + 6), NOW + 6)
    assert changed.packed == b""  # new data: packed when its decoded copy goes
    hot.install(make_entry("c.example", NOW), NOW)
    assert hot.entry(changed) == make_entry("a.example", NOW + 6)
