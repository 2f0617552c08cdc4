"""asyncpg and socket errors, bounded in time, as the caller's own error type.

The PostgreSQL cache backend raises ``CacheError`` and the TLSRPT store
``ReportStoreError``; both bound every database call and translate the same asyncpg
exceptions, so the translation lives here once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg


@contextlib.asynccontextmanager
async def mapped_errors(limit_s: float, error: type[Exception]) -> AsyncIterator[None]:
    """Bound the block by ``limit_s`` and turn asyncpg/OS errors and time-outs into
    ``error("postgres: ...")``; an ``error`` raised inside passes through."""
    try:
        async with asyncio.timeout(limit_s):
            yield
    except error:
        raise
    except TimeoutError as exc:
        raise error(f"postgres: no answer within {limit_s:g} s") from exc
    except (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.InternalClientError,
        OSError,
    ) as exc:
        raise error(f"postgres: {str(exc) or type(exc).__name__}") from exc
