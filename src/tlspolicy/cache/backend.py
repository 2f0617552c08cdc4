"""The storage contract every cache backend keeps, and the helpers they share.

The factory that picks a backend is ``cache.factory.open_backend`` (it imports the backends,
which import this module).

Rules every backend follows, so that the service sees the same cache whichever is configured:

* An entry is stored until ``entry.keep_until()``; past that instant (by the backend's clock)
  it is never returned, counted or listed, whether or not it has been physically removed yet.
* Entries travel as ``CacheEntry.to_json`` text (``encode_entry``). A stored value that does
  not decode (``decode_entry`` returns None) is treated as absent and deleted, never raised.
* Usage counters only grow: ``put`` keeps the larger ``used_at`` and ``hits`` of the stored
  row and the new entry, and ``touch`` adds hits and moves ``used_at`` forward. A refresh
  that started before a usage flush therefore cannot undo it. Since ``used_at`` is one input
  of ``keep_until()``, a use also extends the expiry (``keep_until_after_use``).
* ``put`` of an entry whose ``keep_until()`` (with the stored use merged in) has already
  passed stores nothing and removes the stored entry.
* Leases are advisory locks with an expiry: ``acquire_lease`` is atomic and re-entrant for
  the same owner (which extends it); ``release_lease`` by another owner is ignored.
* Overrides (``overrides.model``, as JSON text) live beside the entries, one per domain,
  until their ``keep_until``; ``purge`` leaves them alone. They are few, so they are read
  all at once.
* Every failure of the store itself surfaces as ``CacheError``, never a third-party
  exception; the caller (``store.PolicyCache``) decides how to carry on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Protocol

from tlspolicy.cache.entry import RETAIN_AFTER_EXPIRY_S, CacheEntry
from tlspolicy.errors import TlsPolicyError

# When a bounded backend overflows it evicts down to this fraction of max_entries, so the
# scan for victims runs once per many inserts instead of on every insert (postfix-tlspol
# prunes 50,000 to 45,000; docs/protocol-notes.md §7.2).
EVICT_TO_FRACTION = 0.95
# How often a backend deletes expired rows as a side effect of a write, in seconds.
CLEANUP_INTERVAL_S = 300.0


class CacheBackend(Protocol):
    """Where cache entries live. One instance per process; methods may interleave."""

    @property
    def name(self) -> str:
        """One of "memory", "sqlite", "redis", "postgres" (read-only, so wrappers fit too)."""

    @property
    def shared(self) -> bool:
        """True when other servers may write the same store (redis, postgres)."""

    async def open(self) -> None:
        """Connect and create the schema. Idempotent: also the reconnect probe.

        Raises:
            CacheError: the store cannot be used now.
        """

    async def get(self, domain: str) -> CacheEntry | None:
        """The live entry for ``domain``, or None (absent, expired or undecodable)."""

    async def get_many(self, domains: Sequence[str]) -> dict[str, CacheEntry]:
        """Live entries for those of ``domains`` that have one."""

    async def put(self, entry: CacheEntry) -> None:
        """Insert or replace the entry for ``entry.domain``; it expires at ``keep_until()``."""

    async def touch(self, usage: Mapping[str, tuple[float, int]]) -> None:
        """Record uses: domain -> (last use time, extra hits). Unknown domains are ignored."""

    async def delete(self, domain: str) -> bool:
        """Remove one entry. Returns True when a live entry was removed."""

    async def purge(self) -> int:
        """Remove every entry (leases stay). Returns how many stored entries were removed."""

    async def entries(self) -> list[CacheEntry]:
        """Every live entry, sorted by domain (admin listing)."""

    async def count(self) -> int:
        """How many live entries there are."""

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        """Atomically take (or extend) the lease ``key`` for ``ttl`` seconds.

        Returns:
            True when ``owner`` holds the lease now, False when someone else does.
        """

    async def release_lease(self, key: str, owner: str) -> None:
        """Give the lease up, only if ``owner`` still holds it."""

    async def put_override(self, domain: str, data: str, keep_until: float) -> None:
        """Store (replace) the override of ``domain`` until ``keep_until``."""

    async def overrides(self) -> dict[str, str]:
        """Every stored override whose ``keep_until`` has not passed: domain -> text."""

    async def delete_override(self, domain: str) -> bool:
        """Remove the override of ``domain``; True when there was one."""

    async def unchanged_elsewhere(self) -> bool:
        """True when no other process or connection wrote since the previous call (so the
        copies this process holds are still current, ``cache.quiet``); False when it did,
        on the first call, or when the backend cannot tell (redis, postgres)."""

    async def aclose(self) -> None:
        """Release connections and threads. Safe to call twice."""


def encode_entry(entry: CacheEntry) -> str:
    """The stored text form of an entry (compact JSON, key order kept)."""
    return json.dumps(entry.to_json(), separators=(",", ":"), ensure_ascii=False)


def decode_entry(text: str | bytes | None, domain: str) -> CacheEntry | None:
    """Parse stored text; None when it is not a readable entry for ``domain``.

    Anything a foreign writer, an older version or a torn write may leave behind must land
    here as None, so every error type that ``json`` and ``CacheEntry.from_json`` raise on
    bad input is caught.
    """
    if text is None:
        return None
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            return None
        entry = CacheEntry.from_json(data)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, TlsPolicyError):
        return None
    return entry if entry.domain == domain else None


def keep_until_after_use(keep_until: float, used_at: float) -> float:
    """``keep_until()`` of an entry after a use at ``used_at``.

    ``CacheEntry.keep_until()`` is the latest of its lifetimes (one of them ``used_at``)
    plus ``RETAIN_AFTER_EXPIRY_S``, so a use can only move it to ``used_at + RETAIN``. This
    lets backends update expiry in place without decoding the stored entry.
    """
    return max(keep_until, used_at + RETAIN_AFTER_EXPIRY_S)
