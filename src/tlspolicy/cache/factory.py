"""``open_backend``: build the backend a ``CacheConfig`` names.

Backend modules are imported here, on demand, so a server that uses sqlite never imports
redis or asyncpg.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tlspolicy.cache.backend import CacheBackend
from tlspolicy.config import BackendName, CacheConfig
from tlspolicy.errors import CacheError


def open_backend(
    config: CacheConfig, *, clock: Callable[[], float] = time.time, recover: bool = True
) -> CacheBackend:
    """Build (not yet open) the backend ``config`` names.

    Backend modules are imported here, so a server that uses sqlite never imports redis.
    ``recover=False`` (admin commands) reports a corrupt sqlite file instead of moving it aside.

    Raises:
        CacheError: unknown backend name, or a URL this backend cannot use.
    """
    if config.backend == "memory":
        from tlspolicy.cache.backends.memory import MemoryBackend  # noqa: PLC0415 - lazy by design

        return MemoryBackend(max_entries=config.max_entries, clock=clock)
    if config.backend == "sqlite":
        from tlspolicy.cache.backends.sqlite import SqliteBackend  # noqa: PLC0415 - lazy by design

        return SqliteBackend(
            config.path, max_entries=config.max_entries, clock=clock, recover=recover
        )
    if config.backend == "redis":
        from tlspolicy.cache.backends.redis import RedisBackend  # noqa: PLC0415 - lazy by design

        return RedisBackend(_required_url(config), clock=clock)
    if config.backend == "postgres":
        from tlspolicy.cache.backends.postgres import PostgresBackend  # noqa: PLC0415 - lazy by design

        return PostgresBackend(_required_url(config), clock=clock)
    names = ", ".join(BackendName)
    raise CacheError(f"unknown cache backend {config.backend!r} (one of {names})")


def _required_url(config: CacheConfig) -> str:
    if not config.url:
        raise CacheError(f"cache.url is required for the {config.backend} backend")
    return config.url
