"""SqliteThread: one worker thread, and the one place sqlite/OS errors become CacheError."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from tlspolicy.db.sqlite_thread import SqliteThread
from tlspolicy.errors import CacheError


async def test_sqlite_thread_runs_everything_in_one_other_thread() -> None:
    worker = SqliteThread("/var/cache/x.sqlite3")
    worker.start()
    worker.start()  # idempotent
    try:
        idents = {await worker.run(threading.get_ident) for _ in range(5)}
    finally:
        worker.stop()
    assert len(idents) == 1
    assert threading.get_ident() not in idents


async def test_sqlite_thread_runs_calls_in_the_order_they_were_made() -> None:
    worker = SqliteThread("/var/cache/x.sqlite3")
    worker.start()
    done: list[int] = []
    try:
        await asyncio.gather(*(worker.run(done.append, i) for i in range(50)))
    finally:
        worker.stop()
    assert done == list(range(50))


async def test_sqlite_thread_outlives_a_caller_that_gave_up() -> None:
    worker = SqliteThread("/var/cache/x.sqlite3")
    worker.start()
    release = threading.Event()
    try:
        waiting = asyncio.ensure_future(worker.run(release.wait, 10))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()  # the call itself finishes; its outcome has nobody to go to
        assert await worker.run(lambda: 42) == 42
    finally:
        worker.stop()


async def test_sqlite_thread_before_start_and_after_stop_is_not_open() -> None:
    worker = SqliteThread("/var/cache/x.sqlite3")
    assert not worker.started
    with pytest.raises(CacheError, match=r"sqlite /var/cache/x.sqlite3: cache is not open"):
        await worker.run(int)
    worker.start()
    assert worker.started
    worker.stop()
    worker.stop()
    with pytest.raises(CacheError, match="not open"):
        await worker.run(int)


def _raise(exc: BaseException) -> None:
    raise exc


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        pytest.param(
            sqlite3.OperationalError("database is locked"), "database is locked", id="sql"
        ),
        pytest.param(PermissionError(13, "Permission denied"), "Permission denied", id="os"),
    ],
)
async def test_sqlite_thread_maps_errors_to_cache_error(error: Exception, shown: str) -> None:
    worker = SqliteThread("/var/cache/x.sqlite3")
    worker.start()
    try:
        with pytest.raises(CacheError, match=f"^sqlite /var/cache/x.sqlite3: {shown}$") as info:
            await worker.run(_raise, error)
    finally:
        worker.stop()
    assert info.value.__cause__ is error


async def test_sqlite_thread_lets_other_errors_through() -> None:
    worker = SqliteThread("/var/cache/x.sqlite3")
    worker.start()
    try:
        with pytest.raises(KeyError):
            await worker.run(_raise, KeyError("x"))
    finally:
        worker.stop()


async def test_sqlite_thread_raises_its_owners_error_type() -> None:
    from tlspolicy.errors import ReportStoreError  # noqa: PLC0415

    thread = SqliteThread("/var/lib/tlsrpt.sqlite3", error=ReportStoreError, what="store")
    with pytest.raises(
        ReportStoreError, match=r"^sqlite /var/lib/tlsrpt\.sqlite3: store is not open$"
    ):
        await thread.run(lambda: None)
    thread.start()
    try:

        def fail() -> None:
            raise sqlite3.OperationalError("disk I/O error")

        with pytest.raises(ReportStoreError, match="disk I/O error"):
            await thread.run(fail)
    finally:
        thread.stop()
