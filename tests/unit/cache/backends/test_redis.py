"""RedisBackend without a server: what it checks before connecting.

The backend's behaviour against real Redis/Valkey is in tests/integration/test_cache_backends.py.
"""

from __future__ import annotations

import pytest

from tlspolicy.cache.backends.redis import RedisBackend
from tlspolicy.errors import CacheError


def test_redis_backend_rejects_malformed_sentinel_url_at_construction() -> None:
    with pytest.raises(CacheError, match="service_name"):
        RedisBackend("redis+sentinel://h1,h2")


async def test_redis_backend_messages_never_show_the_password() -> None:
    backend = RedisBackend("redis://:secret@127.0.0.1:1/0")
    with pytest.raises(CacheError) as info:
        await backend.get("example.test")  # not open: fails before any I/O
    assert "secret" not in str(info.value)
    assert "redis://***@127.0.0.1:1/0" in str(info.value)
