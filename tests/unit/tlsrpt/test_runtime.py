"""The TLSRPT runtime: a store that cannot open yet does not stop the collector."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.unit.tlsrpt.helpers import NO_POLICY_OK, datagram
from tlspolicy.config import parse_config
from tlspolicy.errors import ConfigError
from tlspolicy.tlsrpt.runtime import NOW_ENV, TlsrptRuntime, clock_from_env


async def until(condition: object, what: str) -> None:
    for _ in range(20000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"timed out waiting for {what}")


async def test_runtime_store_opens_later_and_nothing_is_lost(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the store's directory should be")
    config = parse_config(
        {
            "cache": {"path": str(tmp_path / "state" / "cache.sqlite3")},
            "tlsrpt": {"collector_socket": str(tmp_path / "run" / "tlsrpt.sock")},
        }
    )
    fixed = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    runtime = TlsrptRuntime(config, report=False, clock=lambda: fixed)
    runtime.open_retry_s = 0.01
    runtime.bind()
    await runtime.start()  # does not raise
    assert not runtime.store_open and runtime.collector is not None
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for _ in range(3):
            s.sendto(datagram(NO_POLICY_OK), runtime.collector.path)
    await until(lambda: runtime.collector.stats.received == 3, "3 datagrams")  # type: ignore[union-attr]
    assert not await runtime.writer.flush()  # kept in memory
    blocker.unlink()
    await until(lambda: runtime.store_open, "the store to open")
    await runtime.aclose()  # flushes
    store = TlsrptRuntime(config, collect=False, report=False).store
    await store.open()
    try:
        (group,) = await store.day_counts(fixed.date())
    finally:
        await store.aclose()
    assert group.successful == 3


def test_runtime_clock_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NOW_ENV, "2026-12-02T06:00:00")
    assert clock_from_env()() == datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    monkeypatch.setenv(NOW_ENV, "yesterday")
    with pytest.raises(ConfigError, match=NOW_ENV):
        clock_from_env()
    monkeypatch.delenv(NOW_ENV)
    assert clock_from_env()().tzinfo is UTC
