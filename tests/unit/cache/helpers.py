"""Builders and fakes shared by the cache tests (unit and integration)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from tlspolicy.cache.backend import CacheBackend
from tlspolicy.cache.entry import RETAIN_AFTER_EXPIRY_S, CacheEntry, DaneBranch
from tlspolicy.dane.result import DaneLevel, DaneResult
from tlspolicy.errors import CacheError
from tlspolicy.mtasts.policy import parse_policy
from tlspolicy.mtasts.state import StsState


@dataclass
class FakeClock:
    """A settable clock (seconds since the epoch); starts at a fixed, realistic time."""

    now: float = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_entry(
    domain: str,
    now: float,
    *,
    dane_ttl: float = 300.0,
    used_at: float | None = None,
    hits: int = 0,
    reason: str = "all MX hosts have usable TLSA",
) -> CacheEntry:
    """A DANE-only entry checked at ``now``; keep_until = max(expiry, used_at) + RETAIN."""
    result = DaneResult(level=DaneLevel.DANE_ONLY, reason=reason, ttl=int(dane_ttl))
    return CacheEntry(
        domain=domain,
        dane=DaneBranch(result=result, checked_at=now, expires_at=now + dane_ttl),
        sts=None,
        used_at=now if used_at is None else used_at,
        hits=hits,
    )


STS_POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 86400\r\n"


def make_sts_entry(domain: str, now: float) -> CacheEntry:
    """An entry with both branches, the MTA-STS one holding a real parsed policy."""
    state = StsState(
        policy=parse_policy(STS_POLICY),
        policy_id="20250601T000000",
        fetched_at=now,
        record_id="20250601T000000",
        checked_at=now,
    )
    return replace(make_entry(domain, now), sts=state)


def entry_expiring_at(domain: str, keep_until: float) -> CacheEntry:
    """An entry whose ``keep_until()`` is exactly ``keep_until``."""
    expires_at = keep_until - RETAIN_AFTER_EXPIRY_S
    return make_entry(domain, expires_at - 300.0, used_at=expires_at - 300.0)


@dataclass
class CountingBackend:
    """Wraps a backend and counts calls by method name (to prove "no backend call")."""

    inner: CacheBackend
    calls: Counter[str] = field(default_factory=Counter)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def shared(self) -> bool:
        return self.inner.shared

    async def open(self) -> None:
        self.calls["open"] += 1
        await self.inner.open()

    async def get(self, domain: str) -> CacheEntry | None:
        self.calls["get"] += 1
        return await self.inner.get(domain)

    async def get_many(self, domains: Sequence[str]) -> dict[str, CacheEntry]:
        self.calls["get_many"] += 1
        return await self.inner.get_many(domains)

    async def put(self, entry: CacheEntry) -> None:
        self.calls["put"] += 1
        await self.inner.put(entry)

    async def touch(self, usage: Mapping[str, tuple[float, int]]) -> None:
        self.calls["touch"] += 1
        await self.inner.touch(usage)

    async def delete(self, domain: str) -> bool:
        self.calls["delete"] += 1
        return await self.inner.delete(domain)

    async def purge(self) -> int:
        self.calls["purge"] += 1
        return await self.inner.purge()

    async def entries(self) -> list[CacheEntry]:
        self.calls["entries"] += 1
        return await self.inner.entries()

    async def count(self) -> int:
        self.calls["count"] += 1
        return await self.inner.count()

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        self.calls["acquire_lease"] += 1
        return await self.inner.acquire_lease(key, owner, ttl)

    async def release_lease(self, key: str, owner: str) -> None:
        self.calls["release_lease"] += 1
        await self.inner.release_lease(key, owner)

    async def put_override(self, domain: str, data: str, keep_until: float) -> None:
        self.calls["put_override"] += 1
        await self.inner.put_override(domain, data, keep_until)

    async def overrides(self) -> dict[str, str]:
        self.calls["overrides"] += 1
        return await self.inner.overrides()

    async def delete_override(self, domain: str) -> bool:
        self.calls["delete_override"] += 1
        return await self.inner.delete_override(domain)

    async def unchanged_elsewhere(self) -> bool:
        self.calls["unchanged_elsewhere"] += 1
        return await self.inner.unchanged_elsewhere()

    async def aclose(self) -> None:
        self.calls["aclose"] += 1
        await self.inner.aclose()


class FlakyBackend(CountingBackend):
    """A counting wrapper that raises ``CacheError`` from every call while ``down``.

    ``shared`` can be forced, so the memory backend can stand in for a network store.
    """

    def __init__(self, inner: CacheBackend, *, shared: bool = True) -> None:
        super().__init__(inner)
        self.down = False
        self._shared = shared

    @property
    def shared(self) -> bool:
        return self._shared

    @property
    def name(self) -> str:
        return "flaky"

    def _check(self, method: str) -> None:
        self.calls[method] += 1
        if self.down:
            raise CacheError("flaky: connection refused")

    async def open(self) -> None:
        self._check("open")

    async def get(self, domain: str) -> CacheEntry | None:
        self._check("get")
        return await self.inner.get(domain)

    async def put(self, entry: CacheEntry) -> None:
        self._check("put")
        await self.inner.put(entry)

    async def touch(self, usage: Mapping[str, tuple[float, int]]) -> None:
        self._check("touch")
        await self.inner.touch(usage)

    async def delete(self, domain: str) -> bool:
        self._check("delete")
        return await self.inner.delete(domain)

    async def purge(self) -> int:
        self._check("purge")
        return await self.inner.purge()

    async def entries(self) -> list[CacheEntry]:
        self._check("entries")
        return await self.inner.entries()

    async def count(self) -> int:
        self._check("count")
        return await self.inner.count()

    async def unchanged_elsewhere(self) -> bool:
        self._check("unchanged_elsewhere")
        return False  # a network store: others may write at any time

    async def overrides(self) -> dict[str, str]:
        self._check("overrides")
        return await self.inner.overrides()

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        self._check("acquire_lease")
        return await self.inner.acquire_lease(key, owner, ttl)

    async def release_lease(self, key: str, owner: str) -> None:
        self._check("release_lease")
        await self.inner.release_lease(key, owner)
