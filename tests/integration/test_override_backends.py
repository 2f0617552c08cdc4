"""Override storage on every cache backend (memory, sqlite, real Redis and PostgreSQL):
the same put/list/delete/expiry semantics, kept apart from entries and purges."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_cache_backends import ALL, PERSISTENT, _config
from tests.unit.cache.helpers import FakeClock, make_entry
from tlspolicy.cache.backend import CacheBackend
from tlspolicy.cache.factory import open_backend

pytestmark = pytest.mark.integration


async def _opened(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> CacheBackend:
    backend = open_backend(_config(kind, request, tmp_path), clock=clock)
    await backend.open()
    await backend.purge()
    for domain in await backend.overrides():
        await backend.delete_override(domain)
    return backend


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(now=time.time())


@pytest.fixture(params=ALL)
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[CacheBackend]:
    store = await _opened(request.param, request, tmp_path, clock)
    yield store
    await store.aclose()


async def test_override_put_list_replace_delete(backend: CacheBackend, clock: FakeClock) -> None:
    await backend.put_override("b.example", '{"n": 1}', clock.now + 60)
    await backend.put_override("a.example", '{"n": 2}', clock.now + 60)
    await backend.put_override("a.example", '{"n": 3}', clock.now + 60)
    assert await backend.overrides() == {"a.example": '{"n": 3}', "b.example": '{"n": 1}'}
    assert await backend.delete_override("a.example")
    assert not await backend.delete_override("a.example")
    assert await backend.overrides() == {"b.example": '{"n": 1}'}


async def test_override_past_keep_until_is_not_listed(
    backend: CacheBackend, clock: FakeClock
) -> None:
    await backend.put_override("a.example", "{}", clock.now + 1)
    clock.advance(2)
    assert await backend.overrides() == {}


async def test_overrides_survive_purge_and_are_no_entries(
    backend: CacheBackend, clock: FakeClock
) -> None:
    await backend.put(make_entry("a.example", clock.now))
    await backend.put_override("a.example", "{}", clock.now + 60)
    assert await backend.count() == 1
    assert await backend.purge() == 1
    assert await backend.overrides() == {"a.example": "{}"}
    assert await backend.entries() == []


@pytest.mark.parametrize("kind", PERSISTENT)
async def test_override_written_by_one_instance_is_read_by_another(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> None:
    first = await _opened(kind, request, tmp_path, clock)
    second = await _opened(kind, request, tmp_path, clock)
    try:
        await first.put_override("a.example", "{}", clock.now + 60)
        assert await second.overrides() == {"a.example": "{}"}
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_new_override_keeps_the_live_ones(backend: CacheBackend, clock: FakeClock) -> None:
    await backend.put_override("old.example", "{}", clock.now + 1)
    await backend.put_override("live.example", "{}", clock.now + 60)
    clock.advance(2)
    await backend.put_override("new.example", "{}", clock.now + 60)
    assert sorted(await backend.overrides()) == ["live.example", "new.example"]
