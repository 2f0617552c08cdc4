"""The backend factory: the configured backend, lazily imported; bad settings refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.cache.helpers import FakeClock
from tlspolicy.cache.backends.memory import MemoryBackend
from tlspolicy.cache.backends.postgres import PostgresBackend
from tlspolicy.cache.backends.redis import RedisBackend
from tlspolicy.cache.backends.sqlite import SqliteBackend
from tlspolicy.cache.factory import open_backend
from tlspolicy.config import CacheConfig
from tlspolicy.errors import CacheError


@pytest.mark.parametrize(
    ("backend", "url", "kind"),
    [
        pytest.param("memory", None, MemoryBackend, id="memory"),
        pytest.param("sqlite", None, SqliteBackend, id="sqlite"),
        pytest.param("redis", "redis://127.0.0.1:6379/0", RedisBackend, id="redis"),
        pytest.param("postgres", "postgresql://u@127.0.0.1/db", PostgresBackend, id="postgres"),
    ],
)
def test_open_backend_builds_configured_backend(
    tmp_path: Path, backend: str, url: str | None, kind: type
) -> None:
    config = CacheConfig(backend=backend, path=str(tmp_path / "c.sqlite3"), url=url)
    built = open_backend(config, clock=FakeClock())
    assert isinstance(built, kind)
    assert built.name == backend
    assert built.shared is (backend in ("redis", "postgres"))


@pytest.mark.parametrize(
    ("backend", "why"),
    [
        pytest.param("memcached", "unknown cache backend", id="unknown"),
        pytest.param("redis", "cache.url is required", id="redis-without-url"),
        pytest.param("postgres", "cache.url is required", id="postgres-without-url"),
    ],
)
def test_open_backend_rejects_bad_config(backend: str, why: str) -> None:
    with pytest.raises(CacheError, match=why):
        open_backend(CacheConfig(backend=backend, url=None))
