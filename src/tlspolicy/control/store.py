"""The running override set: the configuration's plus the cache backend's, kept in memory.

The hot path (``find``) is a dict lookup, never I/O. The backend's overrides are re-read
every ``cache.hot_ttl`` (``run``), so an override added on one MTA reaches every MTA that
shares the Redis/PostgreSQL store (or the sqlite file) within that bound plus one read;
each change calls the ``on_change`` listeners (the answer memo forgets what it holds).
When the backend cannot be read the last known set stays in force (one WARNING, one INFO
when it can be read again): an outage must not silently drop an operator's exception.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from tlspolicy.config.overrides import Override, OverrideError
from tlspolicy.control.book import OverrideMatch, find_override, merge
from tlspolicy.errors import CacheError

log = logging.getLogger("tlspolicy.overrides")


class OverrideBackend(Protocol):
    """The part of ``cache.backend.CacheBackend`` that holds overrides."""

    async def put_override(self, domain: str, data: str, keep_until: float) -> None: ...
    async def overrides(self) -> dict[str, str]: ...
    async def delete_override(self, domain: str) -> bool: ...


def decode_overrides(stored: dict[str, str]) -> list[Override]:
    """Stored texts as overrides; one that does not decode is skipped (a foreign writer)."""
    found: list[Override] = []
    for domain, text in stored.items():
        try:
            override = Override.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError, AttributeError, OverrideError):
            log.debug("override of %s in the cache does not decode; ignored", domain)
            continue
        if override.domain == domain:
            found.append(override)
    return found


class OverrideStore:
    def __init__(
        self,
        backend: OverrideBackend | None,
        configured: Iterable[Override] = (),
        *,
        interval: float = 5.0,
    ) -> None:
        self.backend = backend
        self.interval = interval
        self.on_change: list[Callable[[], None]] = []
        self._configured = tuple(configured)
        self._stored: list[Override] = []
        self._merged = merge(self._configured, self._stored)
        self._failing = False

    # --- the hot path ----------------------------------------------------------------

    def find(self, domain: str, now: float) -> OverrideMatch | None:
        return find_override(self._merged, domain, now)

    def all(self) -> list[Override]:
        """Every override in force or kept after expiry, by domain."""
        return [self._merged[d] for d in sorted(self._merged)]

    # --- keeping it current ------------------------------------------------------------

    def set_configured(self, configured: Iterable[Override]) -> None:
        """New ``overrides:`` from a reloaded configuration."""
        self._configured = tuple(configured)
        self._install()

    async def load(self) -> bool:
        """Read the backend's overrides now; True when the set changed. Never raises."""
        if self.backend is None:
            return False
        try:
            stored = decode_overrides(await self.backend.overrides())
        except CacheError as exc:
            if not self._failing:
                log.warning("cannot read overrides from the cache (keeping the last): %s", exc)
            self._failing = True
            return False
        if self._failing:
            log.info("overrides readable from the cache again")
            self._failing = False
        if stored == self._stored:
            return False
        self._stored = stored
        self._install()
        return True

    async def run(self) -> None:
        """Re-read every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self.load()

    def _install(self) -> None:
        merged = merge(self._configured, self._stored)
        if merged == self._merged:
            return
        self._merged = merged
        for listener in self.on_change:
            listener()

    # --- admin (``tlspolicy override``) ----------------------------------------------

    async def add(self, override: Override) -> None:
        """Store ``override`` in the backend (replacing the domain's). Raises CacheError."""
        backend = self._require()
        text = json.dumps(override.to_json(), separators=(",", ":"))
        await backend.put_override(override.domain, text, override.keep_until())
        await self.load()

    async def remove(self, domain: str) -> bool:
        """Remove the stored override of ``domain``. Raises CacheError."""
        removed = await self._require().delete_override(domain)
        await self.load()
        return removed

    def _require(self) -> OverrideBackend:
        if self.backend is None:
            raise CacheError("no cache backend to store overrides in")
        return self.backend
