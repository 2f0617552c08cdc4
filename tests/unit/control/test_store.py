"""The running override set: re-reads, change listeners, outages, admin writes."""

from __future__ import annotations

import logging

import pytest

from tests.unit.cache.helpers import FakeClock, FlakyBackend
from tlspolicy.cache.backends.memory import MemoryBackend
from tlspolicy.config.overrides import Override
from tlspolicy.control.store import OverrideStore
from tlspolicy.errors import CacheError

NOW = 1_800_000_000.0


def _store(configured: tuple[Override, ...] = ()) -> tuple[OverrideStore, FlakyBackend]:
    backend = FlakyBackend(MemoryBackend(max_entries=10, clock=FakeClock(NOW)))
    return OverrideStore(backend, configured), backend


async def test_add_is_seen_after_load_and_calls_listeners() -> None:
    store, _ = _store()
    changes: list[int] = []
    store.on_change.append(lambda: changes.append(1))
    await store.add(Override("a.example", "may", until=NOW + 60, reason="r"))
    match = store.find("a.example", NOW)
    assert match is not None and match.override.reason == "r"
    assert changes == [1]
    assert not await store.load()  # nothing new: no listener call
    assert changes == [1]
    assert await store.remove("a.example")
    assert store.find("a.example", NOW) is None and changes == [1, 1]


async def test_a_second_store_on_the_same_backend_sees_the_override_on_load() -> None:
    first, backend = _store()
    second = OverrideStore(backend)
    await first.add(Override("a.example", "none", until=NOW + 60))
    assert second.find("a.example", NOW) is None
    assert await second.load()
    assert second.find("a.example", NOW) is not None


async def test_backend_outage_keeps_the_last_known_set(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "tlspolicy.overrides")
    store, backend = _store()
    await store.add(Override("a.example", "may", until=NOW + 60))
    backend.down = True
    assert not await store.load()
    assert not await store.load()
    assert store.find("a.example", NOW) is not None
    assert caplog.text.count("cannot read overrides") == 1
    backend.down = False
    await store.load()
    assert "overrides readable from the cache again" in caplog.text


async def test_configured_overrides_apply_and_reload_replaces_them() -> None:
    store, _ = _store((Override("c.example", "encrypt", source="config"),))
    assert store.find("c.example", NOW) is not None
    store.set_configured(())
    assert store.find("c.example", NOW) is None


async def test_undecodable_stored_override_is_ignored() -> None:
    store, backend = _store()
    await backend.put_override("bad.example", "{not json", NOW + 60)
    await backend.put_override("x.example", '{"domain": "y.example", "level": "may"}', NOW + 60)
    await store.load()
    assert store.all() == []


async def test_admin_without_backend_raises() -> None:
    with pytest.raises(CacheError):
        await OverrideStore(None).add(Override("a.example", "may"))
