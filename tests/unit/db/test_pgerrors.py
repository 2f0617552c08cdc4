"""asyncpg errors and time-outs become the caller's error type."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tlspolicy.db.pgerrors import mapped_errors
from tlspolicy.errors import CacheError, ReportStoreError


async def test_asyncpg_and_os_errors_are_mapped() -> None:
    with pytest.raises(CacheError, match=r"^postgres: connection refused$"):
        async with mapped_errors(1.0, CacheError):
            raise ConnectionRefusedError("connection refused")
    with pytest.raises(ReportStoreError, match=r"^postgres: InterfaceError$"):
        async with mapped_errors(1.0, ReportStoreError):
            raise asyncpg.InterfaceError("")


async def test_time_out_and_own_errors() -> None:
    with pytest.raises(CacheError, match=r"^postgres: no answer within 0\.01 s$"):
        async with mapped_errors(0.01, CacheError):
            await asyncio.sleep(1)
    with pytest.raises(CacheError, match=r"^mine$"):
        async with mapped_errors(1.0, CacheError):
            raise CacheError("mine")
    with pytest.raises(ValueError, match="other"):  # not a database error: not mapped
        async with mapped_errors(1.0, CacheError):
            raise ValueError("other")
