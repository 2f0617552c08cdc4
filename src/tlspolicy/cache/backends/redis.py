"""A shared cache backend on Redis or Valkey (redis-py asyncio), for several servers at once.

Layout (Redis Cluster is not supported: scripts, in ``cache.redis_scripts``, touch several
keys in one call):

* ``tlspolicy:e:<domain>``: a hash with ``data`` (entry JSON), ``used_at``, ``hits`` and
  ``keep_until``; ``PEXPIREAT`` = keep_until, so nothing grows without bound. Reads also
  compare ``keep_until`` with our clock, so an entry is never returned after its time even
  if the server's clock lags. Writes are Lua scripts, so counter merges are atomic.
* ``tlspolicy:overrides``: operator overrides, one hash (``cache.redis_overrides``).
* ``tlspolicy:l:<key>``: a lease, ``SET key owner NX PX``; extension and release are
  compare-and-set scripts, so only the owner can extend or delete it.

URLs (``cache.url``):

* ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS; ``?ssl_ca_certs=``
  and the other redis-py query options apply), ``unix://[[user]:password@]/path?db=N``.
* ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
  [?sentinel_password=PW]`` (grammar in ``cache.redis_url``): the sentinels are asked for
  the master of ``service``. Plain TCP only. Failover is followed on reconnect.

Every call has ``REDIS_SOCKET_TIMEOUT_S`` and one immediate retry (a pooled connection to a
restarted server fails once), so an outage costs at most about two seconds to notice. Every
redis-py or OS error becomes ``CacheError`` in ``_mapped_errors``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from tlspolicy.cache.backend import decode_entry, encode_entry
from tlspolicy.cache.backends.redis_scripts import (
    DELETE_LUA,
    DROP_GARBAGE_LUA,
    EXTEND_LEASE_LUA,
    PUT_LUA,
    RELEASE_LEASE_LUA,
    TOUCH_LUA,
)
from tlspolicy.cache.backends.redis_url import parse_sentinel_url, redact_url
from tlspolicy.cache.entry import RETAIN_AFTER_EXPIRY_S, CacheEntry
from tlspolicy.errors import CacheError

ENTRY_PREFIX = b"tlspolicy:e:"
LEASE_PREFIX = b"tlspolicy:l:"
# Read/connect timeout per command, in seconds: the brief's outage-detection budget.
REDIS_SOCKET_TIMEOUT_S = 1.0
REDIS_RETRIES = 1  # immediate retries of a failed command (stale pooled connection)
SCAN_COUNT = 1000  # keys per SCAN round trip
BATCH = 500  # keys per pipeline or script call


def _entry_key(domain: str) -> bytes:
    return ENTRY_PREFIX + domain.encode("utf-8", "surrogateescape")


def _key_domain(key: bytes) -> str:
    return key[len(ENTRY_PREFIX) :].decode("utf-8", "surrogateescape")


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


OVERRIDES_KEY = b"tlspolicy:overrides"


def _parse(value: bytes) -> tuple[float, str] | None:
    head, sep, data = value.decode("utf-8", "replace").partition("\n")
    try:
        keep_until = float(head)
    except ValueError:
        return None
    return (keep_until, data) if sep and not math.isnan(keep_until) else None


class RedisBackend:
    """The ``redis`` backend (also Valkey). ``url`` as in the module docstring."""

    name = "redis"
    shared = True

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self._url = url
        self._clock = clock
        self._client: Redis | None = None
        self._sentinel: Sentinel | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._where = redact_url(url)
        if url.startswith("redis+sentinel://"):
            parse_sentinel_url(url)  # a malformed URL is a configuration error: fail now

    async def open(self) -> None:
        with self._mapped_errors():
            if self._client is None:
                self._client = self._connect()
            await self._client.ping()

    async def get(self, domain: str) -> CacheEntry | None:
        return (await self.get_many([domain])).get(domain)

    async def get_many(self, domains: Sequence[str]) -> dict[str, CacheEntry]:
        now = self._clock()
        found: dict[str, CacheEntry] = {}
        unique = list(dict.fromkeys(domains))
        with self._mapped_errors():
            for start in range(0, len(unique), BATCH):
                batch = unique[start : start + BATCH]
                async with self._redis().pipeline(transaction=False) as pipe:
                    for domain in batch:
                        pipe.hmget(_entry_key(domain), ["data", "used_at", "hits", "keep_until"])
                    replies = await pipe.execute(raise_on_error=False)
                for domain, reply in zip(batch, replies, strict=True):
                    entry = await self._decode(domain, reply, now)
                    if entry is not None:
                        found[domain] = entry
        return found

    async def put(self, entry: CacheEntry) -> None:
        args = (
            encode_entry(entry),
            repr(entry.used_at),
            str(entry.hits),
            repr(entry.keep_until()),
            repr(RETAIN_AFTER_EXPIRY_S),
            repr(self._clock()),
        )
        with self._mapped_errors():
            await self._script(PUT_LUA, [_entry_key(entry.domain)], args)

    async def touch(self, usage: Mapping[str, tuple[float, int]]) -> None:
        items = list(usage.items())
        now = self._clock()
        with self._mapped_errors():
            for start in range(0, len(items), BATCH):
                batch = items[start : start + BATCH]
                args: list[str] = [repr(RETAIN_AFTER_EXPIRY_S), repr(now)]
                for _, (used_at, hits) in batch:
                    args += [repr(float(used_at)), str(int(hits))]
                await self._script(TOUCH_LUA, [_entry_key(d) for d, _ in batch], args)

    async def delete(self, domain: str) -> bool:
        with self._mapped_errors():
            keep = await self._script(DELETE_LUA, [_entry_key(domain)], ())
        keep_until = _float(keep)
        return keep_until is not None and keep_until >= self._clock()

    async def purge(self) -> int:
        removed = 0
        with self._mapped_errors():
            async for batch in self._scan(ENTRY_PREFIX):
                removed += int(await self._redis().unlink(*batch))
        return removed

    async def entries(self) -> list[CacheEntry]:
        found: dict[str, CacheEntry] = {}
        with self._mapped_errors():
            async for batch in self._scan(ENTRY_PREFIX):
                found.update(await self.get_many([_key_domain(k) for k in batch]))
        return [found[d] for d in sorted(found)]

    async def count(self) -> int:
        now = self._clock()
        live = 0
        with self._mapped_errors():
            async for batch in self._scan(ENTRY_PREFIX):
                async with self._redis().pipeline(transaction=False) as pipe:
                    for key in batch:
                        pipe.hget(key, "keep_until")
                    replies = await pipe.execute(raise_on_error=False)
                for reply in replies:
                    keep_until = None if isinstance(reply, Exception) else _float(reply)
                    if keep_until is not None and keep_until >= now:
                        live += 1
        return live

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        name = LEASE_PREFIX + key.encode()
        ttl_ms = max(1, math.ceil(ttl * 1000))
        with self._mapped_errors():
            if await self._redis().set(name, owner, nx=True, px=ttl_ms):
                return True
            return bool(await self._script(EXTEND_LEASE_LUA, [name], (owner, str(ttl_ms))))

    async def release_lease(self, key: str, owner: str) -> None:
        with self._mapped_errors():
            await self._script(RELEASE_LEASE_LUA, [LEASE_PREFIX + key.encode()], (owner,))

    async def unchanged_elsewhere(self) -> bool:
        return False  # shared: other servers write all the time; copies are re-read instead

    async def aclose(self) -> None:
        client, self._client = self._client, None
        sentinel, self._sentinel = self._sentinel, None
        self._scripts.clear()
        with self._mapped_errors():
            if client is not None:
                await client.aclose()
            if sentinel is not None:
                await sentinel.aclose()

    # --- helpers ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """The one place where redis-py and socket errors become ``CacheError``."""
        try:
            yield
        except CacheError:
            raise
        except (RedisError, OSError, ValueError) as exc:  # TimeoutError is an OSError
            detail = str(exc) or type(exc).__name__
            raise CacheError(f"redis {self._where}: {detail}") from exc

    def _connect(self) -> Redis:
        common: dict[str, Any] = {
            "socket_timeout": REDIS_SOCKET_TIMEOUT_S,
            "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_S,
            "retry": Retry(NoBackoff(), REDIS_RETRIES),
            "decode_responses": False,
        }
        if not self._url.startswith("redis+sentinel://"):
            return Redis.from_url(self._url, **common)
        parsed = parse_sentinel_url(self._url)
        sentinel_kwargs: dict[str, Any] = {
            "socket_timeout": REDIS_SOCKET_TIMEOUT_S,
            "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_S,
        }
        if parsed.sentinel_password is not None:
            sentinel_kwargs["password"] = parsed.sentinel_password
        self._sentinel = Sentinel(list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs)
        client: Redis = self._sentinel.master_for(
            parsed.service,
            db=parsed.db,
            username=parsed.username,
            password=parsed.password,
            **common,
        )
        return client

    def _redis(self) -> Redis:
        if self._client is None:
            raise CacheError(f"redis {self._where}: cache is not open")
        return self._client

    async def _script(self, lua: str, keys: Sequence[bytes], args: Sequence[str | bytes]) -> Any:
        """Run a script by EVALSHA (redis-py falls back to EVAL after NOSCRIPT)."""
        script = self._scripts.get(lua)
        if script is None:
            script = self._scripts[lua] = self._redis().register_script(lua)
        return await script(keys=list(keys), args=list(args))

    async def _scan(self, prefix: bytes) -> AsyncIterator[list[bytes]]:
        batch: list[bytes] = []
        async for key in self._redis().scan_iter(match=prefix + b"*", count=SCAN_COUNT):
            batch.append(key)
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    async def _decode(self, domain: str, reply: Any, now: float) -> CacheEntry | None:
        """One HMGET reply as an entry; garbage is deleted, expired is None."""
        if isinstance(reply, ResponseError):  # WRONGTYPE: someone else's key
            await self._script(DROP_GARBAGE_LUA, [_entry_key(domain)], ("", "1"))
            return None
        if isinstance(reply, Exception):
            raise reply
        data, used_at, hits, keep_until = reply
        if data is None and used_at is None and hits is None and keep_until is None:
            return None
        entry = decode_entry(data, domain)
        used, count, keep = _float(used_at), _float(hits), _float(keep_until)
        if entry is None or used is None or count is None or keep is None:
            marker = ("", "1") if data is None else (data, "0")
            await self._script(DROP_GARBAGE_LUA, [_entry_key(domain)], marker)
            return None
        if keep < now:
            return None
        return replace(entry, used_at=used, hits=int(count))

    async def put_override(self, domain: str, data: str, keep_until: float) -> None:
        now = self._clock()
        with self._mapped_errors():
            stored = await self._all()
            stale = [d for d, (keep, _) in stored.items() if keep < now and d != domain]
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.hset(OVERRIDES_KEY, domain, f"{keep_until!r}\n{data}")
                if stale:
                    pipe.hdel(OVERRIDES_KEY, *stale)
                await pipe.execute()

    async def overrides(self) -> dict[str, str]:
        now = self._clock()
        with self._mapped_errors():
            stored = await self._all()
        return {d: data for d, (keep, data) in sorted(stored.items()) if keep >= now}

    async def delete_override(self, domain: str) -> bool:
        with self._mapped_errors():
            return bool(await self._redis().hdel(OVERRIDES_KEY, domain))

    async def _all(self) -> dict[str, tuple[float, str]]:
        """Every field, parsed; ``put_override`` uses the past ones to delete them."""
        raw = await self._redis().hgetall(OVERRIDES_KEY)
        found: dict[str, tuple[float, str]] = {}
        for field, value in raw.items():
            parsed = _parse(value) if isinstance(value, bytes) else None
            if parsed is not None and isinstance(field, bytes):
                found[field.decode("utf-8", "surrogateescape")] = parsed
        return found
