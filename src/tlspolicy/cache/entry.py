"""One cache entry per policy domain: the DANE branch and the MTA-STS branch, each with its
own lifetime, plus usage counters for eviction and refresh-ahead.

Entries are values: the service builds a new one and stores it. ``to_json``/``from_json``
are the only serialisation, shared by every backend, so all backends store the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tlspolicy.dane.result import DaneResult
from tlspolicy.mtasts.state import StsState

FORMAT_VERSION = 1
# How long an entry is kept after both branches stopped being useful, so that refresh
# failures can still serve a valid MTA-STS policy and admin commands can show it.
RETAIN_AFTER_EXPIRY_S = 3600.0


@dataclass(frozen=True, slots=True)
class DaneBranch:
    result: DaneResult
    checked_at: float
    expires_at: float

    def fresh(self, now: float) -> bool:
        return now < self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result.to_json(),
            "checked_at": self.checked_at,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DaneBranch:
        return cls(
            result=DaneResult.from_json(data["result"]),
            checked_at=float(data["checked_at"]),
            expires_at=float(data["expires_at"]),
        )


@dataclass(frozen=True, slots=True)
class CacheEntry:
    domain: str
    dane: DaneBranch | None = None
    sts: StsState | None = None
    used_at: float = 0.0
    hits: int = 0

    def with_use(self, now: float) -> CacheEntry:
        return replace(self, used_at=now, hits=self.hits + 1)

    def keep_until(self) -> float:
        """When a backend may forget this entry entirely."""
        candidates = [self.used_at]
        if self.dane is not None:
            candidates.append(self.dane.expires_at)
        if self.sts is not None:
            candidates.append(self.sts.keep_until())
        return max(candidates) + RETAIN_AFTER_EXPIRY_S

    def to_json(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "domain": self.domain,
            "dane": None if self.dane is None else self.dane.to_json(),
            "sts": None if self.sts is None else self.sts.to_json(),
            "used_at": self.used_at,
            "hits": self.hits,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CacheEntry:
        """Raises ValueError (or KeyError/TypeError) on data this version cannot read."""
        if data.get("v") != FORMAT_VERSION:
            raise ValueError(f"unsupported cache entry version {data.get('v')!r}")
        dane = data.get("dane")
        sts = data.get("sts")
        return cls(
            domain=str(data["domain"]),
            dane=None if dane is None else DaneBranch.from_json(dane),
            sts=None if sts is None else StsState.from_json(sts),
            used_at=float(data.get("used_at", 0.0)),
            hits=int(data.get("hits", 0)),
        )
