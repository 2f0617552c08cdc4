"""One behavioural suite for every cache backend: memory, sqlite, and real Redis/PostgreSQL.

The same assertions run against each backend, so "same semantics on every backend" is
checked, not promised. Redis and PostgreSQL decide expiry with the clock we pass in (and
Redis additionally with PEXPIREAT), so the fake clock starts at the real time.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from tests.lab.services import PostgresServer, RedisServer
from tests.unit.cache.helpers import (
    CountingBackend,
    FakeClock,
    entry_expiring_at,
    make_entry,
    make_sts_entry,
)
from tlspolicy.cache.backend import CacheBackend
from tlspolicy.cache.backends.redis import RedisBackend
from tlspolicy.cache.factory import open_backend
from tlspolicy.cache.store import PolicyCache
from tlspolicy.config import CacheConfig
from tlspolicy.errors import CacheError

ALL = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
SERIALISED = [p for p in ALL if p.values[0] != "memory"]  # garbage can only exist on disk/wire
PERSISTENT = SERIALISED  # a second process/instance sees the same store
BOUNDED = [p for p in ALL if p.values[0] in ("memory", "sqlite")]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(now=time.time())


def _config(kind: str, request: pytest.FixtureRequest, tmp_path: Path, **kw: Any) -> CacheConfig:
    url = None
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        if not server.running:
            server.start()
        url = server.url
    elif kind == "postgres":
        pg: PostgresServer = request.getfixturevalue("postgres_server")
        if not pg.running:
            pg.start()
        url = pg.url
    return CacheConfig(backend=kind, path=str(tmp_path / "cache.sqlite3"), url=url, **kw)


async def _opened(config: CacheConfig, clock: FakeClock) -> CacheBackend:
    """An open backend on an empty store (shared servers live for the whole session)."""
    backend = open_backend(config, clock=clock)
    await backend.open()
    await backend.purge()
    return backend


@pytest.fixture(params=ALL)
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[CacheBackend]:
    store = await _opened(_config(request.param, request, tmp_path), clock)
    yield store
    await store.aclose()


@pytest.fixture(params=PERSISTENT)
async def store_pair(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[CacheBackend, CacheBackend]]:
    """Two independent backend instances on one store (two servers, or server + CLI)."""
    config = _config(request.param, request, tmp_path)
    first = await _opened(config, clock)
    second = await _opened(config, clock)
    yield first, second
    await first.aclose()
    await second.aclose()


def _lease() -> str:
    return f"lookup:dane:{uuid.uuid4().hex}.example"


# --- storage semantics -------------------------------------------------------------------


async def test_backend_put_get_round_trip(backend: CacheBackend, clock: FakeClock) -> None:
    entry = make_entry("example.com", clock.now, hits=7, used_at=clock.now + 0.123456789)
    both = make_sts_entry("bücher.example", clock.now)  # U-label: keys are not only ASCII
    await backend.put(entry)
    await backend.put(both)
    assert await backend.get("example.com") == entry
    assert await backend.get("bücher.example") == both
    assert await backend.get("example.net") is None


async def test_backend_get_many_returns_only_present(
    backend: CacheBackend, clock: FakeClock
) -> None:
    a, b = make_entry("a.example", clock.now), make_entry("b.example", clock.now)
    await backend.put(a)
    await backend.put(b)
    found = await backend.get_many(["a.example", "b.example", "c.example", "a.example"])
    assert found == {"a.example": a, "b.example": b}
    assert await backend.get_many([]) == {}


async def test_backend_overwrite_replaces_data_and_keeps_larger_counters(
    backend: CacheBackend, clock: FakeClock
) -> None:
    await backend.put(make_entry("a.example", clock.now, hits=5, used_at=clock.now + 10))
    newer = make_entry("a.example", clock.now + 1, hits=1, reason="refreshed")
    await backend.put(newer)
    stored = await backend.get("a.example")
    assert stored == replace(newer, hits=5, used_at=clock.now + 10)


async def test_backend_expired_entry_is_never_returned(
    backend: CacheBackend, clock: FakeClock
) -> None:
    entry = entry_expiring_at("old.example", clock.now + 100)
    await backend.put(entry)
    assert await backend.get("old.example") == entry
    clock.advance(101)
    assert await backend.get("old.example") is None
    assert await backend.get_many(["old.example"]) == {}
    assert await backend.entries() == []
    assert await backend.count() == 0
    assert await backend.delete("old.example") is False


async def test_backend_put_of_expired_entry_stores_nothing(
    backend: CacheBackend, clock: FakeClock
) -> None:
    await backend.put(entry_expiring_at("dead.example", clock.now - 1))
    assert await backend.get("dead.example") is None
    assert await backend.count() == 0


async def test_backend_put_merges_stored_use_into_expiry(
    backend: CacheBackend, clock: FakeClock
) -> None:
    await backend.put(make_entry("a.example", clock.now))  # last used now
    late = entry_expiring_at("a.example", clock.now - 1)  # a result built from an old copy
    await backend.put(late)
    assert await backend.get("a.example") == replace(late, used_at=clock.now)


async def test_backend_touch_adds_hits_and_extends_expiry(
    backend: CacheBackend, clock: FakeClock
) -> None:
    entry = entry_expiring_at("a.example", clock.now + 100)
    await backend.put(entry)
    await backend.touch({"a.example": (clock.now + 50, 3), "unknown.example": (clock.now, 9)})
    await backend.touch({"a.example": (clock.now + 20, 2)})  # older use: used_at stays
    stored = await backend.get("a.example")
    assert stored is not None
    assert (stored.hits, stored.used_at) == (entry.hits + 5, clock.now + 50)
    assert await backend.get("unknown.example") is None
    clock.advance(200)  # past the original keep_until, within used_at + retention
    assert await backend.get("a.example") is not None
    await backend.touch({})


async def test_backend_delete(backend: CacheBackend, clock: FakeClock) -> None:
    await backend.put(make_entry("a.example", clock.now))
    assert await backend.delete("a.example") is True
    assert await backend.get("a.example") is None
    assert await backend.delete("a.example") is False


async def test_backend_entries_count_and_purge(backend: CacheBackend, clock: FakeClock) -> None:
    for name in ("c.example", "a.example", "b.example"):
        await backend.put(make_entry(name, clock.now))
    assert await backend.count() == 3
    assert [e.domain for e in await backend.entries()] == ["a.example", "b.example", "c.example"]
    assert await backend.purge() == 3
    assert await backend.count() == 0
    assert await backend.entries() == []


# --- leases ------------------------------------------------------------------------------


async def test_backend_lease_one_owner_at_a_time(backend: CacheBackend) -> None:
    key = _lease()
    assert await backend.acquire_lease(key, "server-a", 30.0) is True
    assert await backend.acquire_lease(key, "server-b", 30.0) is False
    assert await backend.acquire_lease(key, "server-a", 30.0) is True  # re-entrant, extends
    await backend.release_lease(key, "server-b")  # not the owner: ignored
    assert await backend.acquire_lease(key, "server-b", 30.0) is False
    await backend.release_lease(key, "server-a")
    assert await backend.acquire_lease(key, "server-b", 30.0) is True


async def test_backend_lease_concurrent_acquire_has_one_winner(backend: CacheBackend) -> None:
    key = _lease()
    results = await asyncio.gather(
        *(backend.acquire_lease(key, f"owner-{i}", 30.0) for i in range(8))
    )
    assert sorted(results) == [False] * 7 + [True]


async def test_backend_lease_expiry_frees_it(backend: CacheBackend, clock: FakeClock) -> None:
    key = _lease()
    assert await backend.acquire_lease(key, "server-a", 0.2) is True
    assert await backend.acquire_lease(key, "server-b", 0.2) is False
    clock.advance(0.5)
    if backend.name == "redis":  # Redis expires leases with its own clock (PX)
        await asyncio.sleep(0.4)
    assert await backend.acquire_lease(key, "server-b", 30.0) is True


# --- bounds (local backends) -------------------------------------------------------------


@pytest.mark.parametrize("kind", BOUNDED)
async def test_backend_bound_evicts_expired_before_least_used(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> None:
    store = await _opened(_config(kind, request, tmp_path, max_entries=4), clock)
    t0 = clock.now
    await store.put(make_entry("oldest-use.example", t0, dane_ttl=100_000, used_at=t0 - 10_000))
    await store.put(entry_expiring_at("expiring.example", t0 + 600))
    await store.put(make_entry("b.example", t0))
    await store.put(make_entry("c.example", t0))
    clock.advance(700)  # "expiring" is now expired; "oldest-use" is live but least used
    await store.put(make_entry("new.example", clock.now))
    names = [e.domain for e in await store.entries()]
    assert names == ["b.example", "c.example", "new.example", "oldest-use.example"]
    await store.aclose()


@pytest.mark.parametrize("kind", BOUNDED)
async def test_backend_bound_evicts_least_recently_used(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> None:
    store = await _opened(_config(kind, request, tmp_path, max_entries=4), clock)
    t0 = clock.now
    for age, name in ((40, "a"), (30, "b"), (20, "c"), (10, "d")):
        await store.put(make_entry(f"{name}.example", t0, used_at=t0 - age))
    await store.touch({"a.example": (t0, 1)})  # a is now the most recently used
    # The new entry is never its own victim, however old its last use.
    await store.put(make_entry("e.example", t0, used_at=t0 - 1000))
    names = [e.domain for e in await store.entries()]
    # Over the bound: evict down to 95 % of it (3 of 4), least recently used first.
    assert names == ["a.example", "d.example", "e.example"]
    assert await store.count() <= 4
    await store.aclose()


@pytest.mark.parametrize("kind", BOUNDED)
async def test_backend_bound_holds_under_churn(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> None:
    store = await _opened(_config(kind, request, tmp_path, max_entries=20), clock)
    for i in range(200):
        await store.put(make_entry(f"d{i:03}.example", clock.now, used_at=clock.now + i))
        assert await store.count() <= 20
    names = {e.domain for e in await store.entries()}
    assert {f"d{i:03}.example" for i in range(190, 200)} <= names  # the most recent survive
    await store.aclose()


# --- garbage -----------------------------------------------------------------------------

GARBAGE = [
    pytest.param("not json at all", id="not-json"),
    pytest.param('{"v": 99, "domain": "bad.example"}', id="future-version"),
    pytest.param('{"v": 1, "domain": "other.example"}', id="other-domain"),
    pytest.param('{"v": 1, "domain": "bad.example", "dane": {"result": 1}}', id="bad-branch"),
    pytest.param("[1, 2, 3]", id="json-list"),
]


async def _inject(kind: str, request: pytest.FixtureRequest, path: Path, data: str) -> None:
    """Write a raw row for bad.example behind the backend's back (a foreign writer)."""
    far = time.time() + 86_400
    if kind == "sqlite":
        import sqlite3  # noqa: PLC0415 - only this branch needs it

        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO entries VALUES ('bad.example', ?, ?, 0, 0)", (data, far)
            )
        conn.close()
    elif kind == "redis":
        client = Redis.from_url(request.getfixturevalue("redis_server").url)
        await client.hset(
            "tlspolicy:e:bad.example",
            mapping={"data": data, "used_at": "0", "hits": "0", "keep_until": str(far)},
        )
        await client.aclose()
    else:
        conn = await asyncpg.connect(request.getfixturevalue("postgres_server").url)
        await conn.execute(
            "INSERT INTO tlspolicy_entries VALUES ('bad.example', $1, $2, 0, 0) "
            "ON CONFLICT (domain) DO UPDATE SET data = EXCLUDED.data",
            data,
            far,
        )
        await conn.close()


@pytest.mark.parametrize("kind", SERIALISED)
@pytest.mark.parametrize("data", GARBAGE)
async def test_backend_garbage_row_is_absent_and_removed(
    kind: str, data: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> None:
    config = _config(kind, request, tmp_path)
    store = await _opened(config, clock)
    await store.put(make_entry("good.example", clock.now))
    await _inject(kind, request, tmp_path / "cache.sqlite3", data)
    assert await store.count() == 2  # counted until someone reads it
    assert await store.get("bad.example") is None
    assert await store.count() == 1  # ...which deleted it
    await _inject(kind, request, tmp_path / "cache.sqlite3", data)
    assert [e.domain for e in await store.entries()] == ["good.example"]
    assert await store.get_many(["bad.example", "good.example"]) == {
        "good.example": make_entry("good.example", clock.now)
    }
    assert await store.count() == 1
    await store.aclose()


@pytest.mark.redis
async def test_redis_backend_key_of_wrong_type_is_absent(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> None:
    store = await _opened(_config("redis", request, tmp_path), clock)
    client = Redis.from_url(request.getfixturevalue("redis_server").url)
    await client.set("tlspolicy:e:bad.example", "a plain string")
    assert await store.get("bad.example") is None
    assert await client.exists("tlspolicy:e:bad.example") == 0
    await client.set("tlspolicy:e:bad.example", "a plain string")
    await store.put(make_entry("bad.example", clock.now))  # overwrites the foreign key
    assert await store.get("bad.example") == make_entry("bad.example", clock.now)
    await client.aclose()
    await store.aclose()


@pytest.mark.redis
async def test_redis_backend_expires_keys_server_side(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = await _opened(_config("redis", request, tmp_path), FakeClock(now=time.time()))
    await store.put(entry_expiring_at("short.example", time.time() + 0.3))
    client = Redis.from_url(request.getfixturevalue("redis_server").url)
    assert await client.pttl("tlspolicy:e:short.example") > 0  # PEXPIREAT was set
    await asyncio.sleep(0.5)
    assert await client.exists("tlspolicy:e:short.example") == 0
    await client.aclose()
    await store.aclose()


# --- the hot layer over each backend -----------------------------------------------------


async def eventually(check: Any, *, expect: Any = True, wait_s: float = 5.0) -> None:
    """Wait for a background cache read: ``check()`` (or its awaited result) == ``expect``."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value == expect:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {value!r} after {wait_s} s, expected {expect!r}")
        await asyncio.sleep(0.01)


async def test_policy_cache_hot_hit_makes_no_backend_call(
    backend: CacheBackend, clock: FakeClock
) -> None:
    counting = CountingBackend(backend)
    cache = PolicyCache(counting, hot_entries=10, hot_ttl=5.0, clock=clock)
    await cache.open()
    entry = make_entry("a.example", clock.now)
    await cache.put(entry)
    for _ in range(3):
        assert await cache.get("a.example") == entry
    assert counting.calls["get"] == 0
    clock.advance(6.0)  # older than hot_ttl: answered now, re-read in the background ...
    assert await cache.get("a.example") == entry
    assert await cache.get("a.example") == entry  # one background read per domain at a time
    expected = 0 if backend.name == "memory" else 1  # ... except where the store is this process
    await eventually(lambda: counting.calls["get"] == expected)
    await asyncio.sleep(0.05)
    assert counting.calls["get"] == expected


async def test_policy_cache_sees_other_writer_within_hot_ttl(
    store_pair: tuple[CacheBackend, CacheBackend], clock: FakeClock
) -> None:
    first, second = store_pair
    writer = PolicyCache(first, hot_entries=10, hot_ttl=5.0, clock=clock)
    reader = PolicyCache(second, hot_entries=10, hot_ttl=5.0, clock=clock)
    await writer.put(make_entry("a.example", clock.now, reason="v1"))
    assert (await reader.get("a.example")) == make_entry("a.example", clock.now, reason="v1")
    await writer.put(make_entry("a.example", clock.now, reason="v2"))
    stale = await reader.get("a.example")
    assert stale is not None and stale.dane is not None
    assert stale.dane.result.reason == "v1"  # within hot_ttl: the hot copy
    fresh = await reader.get_fresh("a.example")
    assert fresh is not None and fresh.dane is not None and fresh.dane.result.reason == "v2"
    await writer.purge()
    assert await reader.get("a.example") is not None
    clock.advance(5.0)
    assert await reader.get("a.example") is not None  # answered now, re-read in the background
    await eventually(lambda: reader.get("a.example"), expect=None)


async def test_policy_cache_quiet_checks_vouch_only_while_nobody_else_writes(
    store_pair: tuple[CacheBackend, CacheBackend], clock: FakeClock
) -> None:
    first, second = store_pair
    writer = PolicyCache(first, hot_entries=10, hot_ttl=5.0, clock=clock)
    counting = CountingBackend(second)
    reader = PolicyCache(counting, hot_entries=10, hot_ttl=5.0, clock=clock)
    await writer.put(make_entry("a.example", clock.now, reason="v1"))
    await reader.check_quiet()  # the first check vouches for nothing yet
    clock.advance(0.1)
    assert await reader.get("a.example") == make_entry("a.example", clock.now - 0.1, reason="v1")
    await reader.put(make_entry("b.example", clock.now))  # its own writes change nothing
    for _ in range(4):  # 10 s, twice hot_ttl, with a check every hot_ttl / 2
        clock.advance(2.5)
        await reader.check_quiet()
    vouched = reader.trusted_until(reader.loaded_at("a.example")) > clock.now
    assert vouched == (second.name == "sqlite")  # data_version; network stores never vouch
    reads = counting.calls["get"]
    assert await reader.get("a.example") is not None
    await asyncio.sleep(0.05)
    assert counting.calls["get"] == reads + (0 if vouched else 1)  # re-read only if stale
    await writer.put(make_entry("a.example", clock.now, reason="v2"))
    await reader.check_quiet()  # sees the other writer's commit
    clock.advance(5.0)
    assert await reader.get("a.example") is not None  # the copy, re-read in the background

    async def reason() -> str:
        entry = await reader.get("a.example")
        return "" if entry is None or entry.dane is None else entry.dane.result.reason

    await eventually(reason, expect="v2")


async def test_policy_cache_usage_counts_reach_backend_in_one_batch(
    backend: CacheBackend, clock: FakeClock
) -> None:
    counting = CountingBackend(backend)
    cache = PolicyCache(counting, hot_entries=10, hot_ttl=5.0, clock=clock)
    await cache.put(make_entry("a.example", clock.now, hits=1))
    for _ in range(3):
        cache.note_use("a.example", clock.now + 1)
    cache.note_use("b.example", clock.now + 1)  # not cached: ignored by the backend
    assert counting.calls["touch"] == 0
    await cache.flush()
    assert counting.calls["touch"] == 1
    stored = await backend.get("a.example")
    assert stored is not None and (stored.hits, stored.used_at) == (4, clock.now + 1)
    hot = await cache.get("a.example")
    assert hot is not None and hot.hits == 4


# --- outages against real servers --------------------------------------------------------


@pytest.mark.redis
async def test_policy_cache_survives_redis_outage(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server: RedisServer = request.getfixturevalue("redis_server")
    counting = CountingBackend(await _opened(_config("redis", request, tmp_path), clock))
    cache = PolicyCache(counting, hot_entries=100, hot_ttl=5.0, clock=clock)
    await cache.open()
    before = make_entry("a.example", clock.now)
    await cache.put(before)
    caplog.set_level(logging.INFO, logger="tlspolicy.cache")
    server.stop()
    try:
        clock.advance(6.0)  # hot copy is stale: answered, and re-read from Redis, which fails
        assert await cache.get("a.example") == before
        await eventually(lambda: not cache.healthy)
        assert "redis" in (cache.outage_reason or "")
        calls = counting.calls.total()
        during = make_entry("b.example", clock.now)
        for _ in range(20):
            await cache.put(during)
            assert await cache.get("b.example") == during
            assert await cache.get("a.example") == before
            assert await cache.get("missing.example") is None
            assert await cache.acquire_lease(_lease(), "me", 10.0) is True
        assert counting.calls.total() == calls  # nothing reaches the backend before the probe
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "cache backend redis unavailable" in warnings[0].getMessage()
        assert "answering from memory and live lookups" in warnings[0].getMessage()
    finally:
        server.start()
    assert await cache.get("missing.example") is None  # backoff not over: still not used
    assert counting.calls.total() == calls
    clock.advance(1.0)
    assert await cache.get("missing.example") is None  # probe, then a real read
    assert cache.healthy
    assert counting.calls["open"] >= 2 and counting.calls.total() > calls
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "available again" in infos[0].getMessage()
    await cache.flush()  # the entry put during the outage is written back
    check = RedisBackend(server.url, clock=clock)
    await check.open()
    assert await check.get("b.example") == during
    await check.aclose()
    await cache.aclose()


@pytest.mark.postgres
async def test_policy_cache_survives_postgres_outage(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    store = await _opened(_config("postgres", request, tmp_path), clock)
    cache = PolicyCache(store, hot_entries=100, hot_ttl=5.0, clock=clock)
    before = make_entry("a.example", clock.now)
    await cache.put(before)
    await asyncio.gather(*(store.count() for _ in range(4)))  # several pooled connections
    caplog.set_level(logging.INFO, logger="tlspolicy.cache")
    server.stop()
    try:
        clock.advance(6.0)
        assert await cache.get("a.example") == before
        await eventually(lambda: not cache.healthy)
        during = make_entry("b.example", clock.now)
        for _ in range(5):
            await cache.put(during)
            assert await cache.get("b.example") == during
        # Our one outage line (asyncpg's own pool retries are quieted by logsetup).
        ours = [r for r in caplog.records if r.name.startswith("tlspolicy")]
        assert [r.levelno for r in ours] == [logging.WARNING], [r.getMessage() for r in ours]
    finally:
        server.start()
    clock.advance(1.0)
    assert await cache.get("a.example") == before  # back: re-read from PostgreSQL ...
    await eventually(lambda: cache.healthy)  # ... at the first probe, although every pooled
    # connection was stale
    await cache.flush()
    assert [e.domain for e in await cache.entries()] == ["a.example", "b.example"]
    await cache.aclose()


@pytest.mark.redis
async def test_redis_backend_finds_master_through_sentinel(
    request: pytest.FixtureRequest, clock: FakeClock
) -> None:
    sentinel = request.getfixturevalue("redis_sentinel")
    server: RedisServer = request.getfixturevalue("redis_server")
    if not server.running:
        server.start()
    store = RedisBackend(sentinel.url, clock=clock)
    await store.open()
    await store.put(make_entry("sentinel.example", clock.now))
    direct = RedisBackend(server.url, clock=clock)
    await direct.open()
    assert await direct.get("sentinel.example") == make_entry("sentinel.example", clock.now)
    await direct.aclose()
    await store.aclose()


@pytest.mark.redis
async def test_redis_backend_unreachable_server_raises_cache_error_fast(
    clock: FakeClock,
) -> None:
    from tests.lab.netutil import free_port  # noqa: PLC0415 - only this test needs it

    store = RedisBackend(f"redis://127.0.0.1:{free_port(udp=False)}/0", clock=clock)
    started = time.monotonic()
    with pytest.raises(CacheError, match="redis"):
        await store.open()
    with pytest.raises(CacheError, match="Connect call failed"):
        await store.get("a.example")
    assert time.monotonic() - started < 2.5
    await store.aclose()
