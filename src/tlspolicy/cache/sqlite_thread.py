"""The one worker thread a sqlite connection lives in, and where its errors are mapped.

Every use of the connection happens in this single thread, so the event loop never blocks
on disk and sqlite3's same-thread check always holds. Every ``sqlite3`` or OS error becomes
the owner's error type in ``run``, nowhere else: ``CacheError`` for the cache,
``ReportStoreError`` for the TLSRPT store.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tlspolicy.errors import CacheError

T = TypeVar("T")


class SqliteThread:
    """A one-thread executor; ``where`` names the file in error messages, ``error`` is the
    type they are raised as, ``what`` names the thing that may not be open yet."""

    def __init__(
        self, where: str, *, error: type[Exception] = CacheError, what: str = "cache"
    ) -> None:
        self._where = where
        self._error = error
        self._what = what
        self._executor: ThreadPoolExecutor | None = None

    @property
    def started(self) -> bool:
        return self._executor is not None

    def start(self) -> None:
        """Start the thread (idempotent: a reconnect probe reuses it)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="tlspolicy-sqlite")

    def stop(self) -> None:
        """Let the thread end; calls after this raise the error type."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` in the thread; the one place sqlite/OS errors are mapped."""
        if self._executor is None:
            raise self._error(f"sqlite {self._where}: {self._what} is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(func, *args))
        except sqlite3.Error as exc:
            raise self._error(f"sqlite {self._where}: {exc}") from exc
        except OSError as exc:
            raise self._error(f"sqlite {self._where}: {exc.strerror or exc}") from exc
        except RuntimeError as exc:  # executor shut down by a concurrent stop()
            raise self._error(f"sqlite {self._where}: {exc}") from exc
