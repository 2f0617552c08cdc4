"""A shared cache backend on Redis or Valkey (redis-py asyncio), for several servers at once.

Layout (Redis Cluster is not supported: scripts touch several keys in one call):

* ``tlspolicy:e:<domain>``: a hash with ``data`` (entry JSON), ``used_at``, ``hits`` and
  ``keep_until``; ``PEXPIREAT`` = keep_until, so nothing grows without bound. Reads also
  compare ``keep_until`` with our clock, so an entry is never returned after its time even
  if the server's clock lags. Writes are Lua scripts, so counter merges are atomic.
* ``tlspolicy:l:<key>``: a lease, ``SET key owner NX PX``; extension and release are
  compare-and-set scripts, so only the owner can extend or delete it.

URLs (``cache.url``):

* ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS; ``?ssl_ca_certs=``
  and the other redis-py query options apply), ``unix://[[user]:password@]/path?db=N``.
* ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
  [?sentinel_password=PW]``: the sentinels (port 26379 unless given; IPv6 in brackets) are
  asked for the master of ``service``; ``user``/``password`` authenticate to that master,
  ``sentinel_password`` to the sentinels. Plain TCP only. Failover is followed on reconnect.

Every call has ``REDIS_SOCKET_TIMEOUT_S`` and one immediate retry (a pooled connection to a
restarted server fails once), so an outage costs at most about two seconds to notice. Every
redis-py or OS error becomes ``CacheError`` in ``_mapped_errors``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, unquote

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from tlspolicy.cache.backend import decode_entry, encode_entry
from tlspolicy.cache.entry import RETAIN_AFTER_EXPIRY_S, CacheEntry
from tlspolicy.errors import CacheError

ENTRY_PREFIX = b"tlspolicy:e:"
LEASE_PREFIX = b"tlspolicy:l:"
# Read/connect timeout per command, in seconds: the brief's outage-detection budget.
REDIS_SOCKET_TIMEOUT_S = 1.0
REDIS_RETRIES = 1  # immediate retries of a failed command (stale pooled connection)
SENTINEL_DEFAULT_PORT = 26379  # redis.io/docs/management/sentinel
SCAN_COUNT = 1000  # keys per SCAN round trip
BATCH = 500  # keys per pipeline or script call

# KEYS[1] entry; ARGV data, used_at, hits, keep_until, retain_s, now. Merge counters (max),
# extend keep_until by the merged use, drop the key if already expired.
_PUT_LUA = """
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then redis.call('DEL', KEYS[1]) end
local used, hits = tonumber(ARGV[2]), tonumber(ARGV[3])
local old = redis.call('HMGET', KEYS[1], 'used_at', 'hits')
local old_used, old_hits = tonumber(old[1]), tonumber(old[2])
if old_used and old_used > used then used = old_used end
if old_hits and old_hits > hits then hits = old_hits end
local keep = tonumber(ARGV[4])
if used + tonumber(ARGV[5]) > keep then keep = used + tonumber(ARGV[5]) end
if keep < tonumber(ARGV[6]) then redis.call('DEL', KEYS[1]) return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'used_at', string.format('%.17g', used),
  'hits', string.format('%d', hits), 'keep_until', string.format('%.17g', keep))
redis.call('PEXPIREAT', KEYS[1], math.ceil(keep * 1000))
return 1
"""

# KEYS entries; ARGV retain_s, now, then (used_at, hits) per key. Live hashes only.
_TOUCH_LUA = """
local retain, now = tonumber(ARGV[1]), tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  if redis.call('TYPE', key).ok == 'hash' then
    local f = redis.call('HMGET', key, 'used_at', 'hits', 'keep_until')
    local old_used, old_hits, keep = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
    if old_used and old_hits and keep and keep >= now then
      local used, add = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
      if old_used > used then used = old_used end
      if used + retain > keep then keep = used + retain end
      redis.call('HSET', key, 'used_at', string.format('%.17g', used),
        'hits', string.format('%d', old_hits + add), 'keep_until', string.format('%.17g', keep))
      redis.call('PEXPIREAT', key, math.ceil(keep * 1000))
    end
  end
end
return 0
"""

# KEYS[1] entry. Delete it; return its keep_until (false when absent or not ours).
_DELETE_LUA = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return false end
local keep = false
if kind == 'hash' then keep = redis.call('HGET', KEYS[1], 'keep_until') end
redis.call('DEL', KEYS[1])
return keep
"""

# KEYS[1] entry; ARGV data as read, '1' if data was absent. Delete garbage unless rewritten.
_DROP_GARBAGE_LUA = """
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return redis.call('DEL', KEYS[1]) end
local data = redis.call('HGET', KEYS[1], 'data')
if (data == false and ARGV[2] == '1') or data == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1] lease; ARGV owner, ttl_ms. Extend only our own lease.
_EXTEND_LEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] lease; ARGV owner. Compare-and-delete.
_RELEASE_LEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """A parsed ``redis+sentinel://`` URL (see the module docstring for the grammar)."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse ``redis+sentinel://[[user]:password@]h1[:p1][,h2[:p2]...]/service[/db][?...]``.

    Raises:
        CacheError: the URL does not follow that grammar.
    """
    scheme = "redis+sentinel://"
    if not url.startswith(scheme):
        raise CacheError(f"not a {scheme} URL")
    rest, _, query = url[len(scheme) :].partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    if not at:
        hostlist = netloc
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_parse_host_port(item) for item in hostlist.split(","))
    parts = [unquote(p) for p in path.split("/")] if slash else []
    if not parts or not parts[0] or len(parts) > 2:
        raise CacheError("redis+sentinel URL needs /service_name[/db] after the hosts")
    db = 0
    if len(parts) == 2 and parts[1]:
        if not parts[1].isdigit():
            raise CacheError(f"redis+sentinel URL: database {parts[1]!r} is not a number")
        db = int(parts[1])
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - {"sentinel_password"})
    if unknown:
        raise CacheError(f"redis+sentinel URL: unknown option {unknown[0]!r}")
    sentinel_password = options["sentinel_password"][0] if "sentinel_password" in options else None
    return SentinelUrl(sentinels, parts[0], db, username, password, sentinel_password)


def _parse_host_port(item: str) -> tuple[str, int]:
    if item.startswith("["):
        host, bracket, tail = item[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise CacheError(f"redis+sentinel URL: bad host {item!r}")
        port_text = tail[1:]
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise CacheError(f"redis+sentinel URL: empty host in {item!r}")
    if not port_text:
        return host, SENTINEL_DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise CacheError(f"redis+sentinel URL: bad port in {item!r}")
    return host, int(port_text)


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
        self._where = _redact(url)
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
            await self._script(_PUT_LUA, [_entry_key(entry.domain)], args)

    async def touch(self, usage: Mapping[str, tuple[float, int]]) -> None:
        items = list(usage.items())
        now = self._clock()
        with self._mapped_errors():
            for start in range(0, len(items), BATCH):
                batch = items[start : start + BATCH]
                args: list[str] = [repr(RETAIN_AFTER_EXPIRY_S), repr(now)]
                for _, (used_at, hits) in batch:
                    args += [repr(float(used_at)), str(int(hits))]
                await self._script(_TOUCH_LUA, [_entry_key(d) for d, _ in batch], args)

    async def delete(self, domain: str) -> bool:
        with self._mapped_errors():
            keep = await self._script(_DELETE_LUA, [_entry_key(domain)], ())
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
            return bool(await self._script(_EXTEND_LEASE_LUA, [name], (owner, str(ttl_ms))))

    async def release_lease(self, key: str, owner: str) -> None:
        with self._mapped_errors():
            await self._script(_RELEASE_LEASE_LUA, [LEASE_PREFIX + key.encode()], (owner,))

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
        self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs
        )
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
            await self._script(_DROP_GARBAGE_LUA, [_entry_key(domain)], ("", "1"))
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
            await self._script(_DROP_GARBAGE_LUA, [_entry_key(domain)], marker)
            return None
        if keep < now:
            return None
        return replace(entry, used_at=used, hits=int(count))


def _redact(url: str) -> str:
    """The URL without its password or query (which may hold one), for messages."""
    scheme, sep, rest = url.partition("?")[0].partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at:
        return f"{scheme}{sep}{rest}"
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user + ':***' if user else '***'}@{host}"
