"""The one worker thread a sqlite connection lives in, and where its errors are mapped.

Every use of the connection happens in this single thread, so the event loop never blocks
on disk and sqlite3's same-thread check always holds. Every ``sqlite3`` or OS error becomes
the owner's error type in ``run``, nowhere else: ``CacheError`` for the cache,
``ReportStoreError`` for the TLSRPT store.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from tlspolicy.errors import CacheError

T = TypeVar("T")

# A call for the thread: the loop and future to settle, the function and its arguments.
_Call = tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]


class SqliteThread:
    """A one-thread executor; ``where`` names the file in error messages, ``error`` is the
    type they are raised as, ``what`` names the thing that may not be open yet.

    A plain queue and ``call_soon_threadsafe``, not ``loop.run_in_executor``: that one
    builds a ``concurrent.futures`` future with its locks and chains a second future to it
    on every call, a third of the hand-off's CPU, and a cold lookup makes one or two calls.
    The thread is a daemon, so a process that ends without ``stop`` does not hang on it;
    every write a caller awaited was committed before its ``run`` returned.
    """

    def __init__(
        self, where: str, *, error: type[Exception] = CacheError, what: str = "cache"
    ) -> None:
        self._where = where
        self._error = error
        self._what = what
        self._calls: queue.SimpleQueue[_Call | None] | None = None

    @property
    def started(self) -> bool:
        return self._calls is not None

    def start(self) -> None:
        """Start the thread (idempotent: a reconnect probe reuses it)."""
        if self._calls is None:
            self._calls = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(self._calls,), name="tlspolicy-sqlite",
                             daemon=True).start()  # fmt: skip

    def stop(self) -> None:
        """Let the thread end once the calls already queued are done; calls after this
        raise the error type."""
        calls, self._calls = self._calls, None
        if calls is not None:
            calls.put(None)

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` in the thread; the one place sqlite/OS errors are mapped."""
        if self._calls is None:
            raise self._error(f"sqlite {self._where}: {self._what} is not open")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, done, func, args))
        try:
            return await done
        except sqlite3.Error as exc:
            raise self._error(f"sqlite {self._where}: {exc}") from exc
        except OSError as exc:
            raise self._error(f"sqlite {self._where}: {exc.strerror or exc}") from exc


def _serve(calls: queue.SimpleQueue[_Call | None]) -> None:
    """The thread: each call in order, its outcome handed to its loop; None ends it."""
    while (call := calls.get()) is not None:
        loop, done, func, args = call
        try:
            result, error = func(*args), None
        except BaseException as exc:  # the caller's future raises it
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it
            loop.call_soon_threadsafe(_settle, done, result, error)


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.cancelled():  # the caller gave up; the call itself has run
        return
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)
