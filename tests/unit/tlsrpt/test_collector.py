"""The collector on a real AF_UNIX datagram socket in a temporary directory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests import looplag
from tests.unit.tlsrpt.helpers import MISMATCH, NO_POLICY_OK, datagram, sts_policy
from tests.unit.tlsrpt.test_store import MemoryStore
from tlspolicy.config.tlsrpt import TlsrptConfig
from tlspolicy.tlsrpt.aggregate import Batch
from tlspolicy.tlsrpt.collector import Collector
from tlspolicy.tlsrpt.datagram import MAX_DATAGRAM_BYTES, MAX_FAILURE_DETAILS
from tlspolicy.tlsrpt.store import BatchWriter

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Metrics:
    def __init__(self) -> None:
        self.datagrams: dict[str, int] = {}
        self.sessions: list[tuple[str, str]] = []

    def tlsrpt_datagrams(self, outcome: str, n: int = 1) -> None:
        self.datagrams[outcome] = self.datagrams.get(outcome, 0) + n

    def tlsrpt_session(self, policy_type: str, result: str) -> None:
        self.sessions.append((policy_type, result))

    def tlsrpt_report(self, method: str, outcome: str) -> None:
        return None


async def until(condition: object, what: str) -> None:
    """Yield to the loop until ``condition()`` holds (the reader runs in between)."""
    for _ in range(10000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError(f"timed out waiting for {what}")


def make(tmp_path: Path, **kw: object) -> tuple[Collector, BatchWriter, Metrics]:
    config = TlsrptConfig(collector_socket=str(tmp_path / "run" / "tlsrpt.sock"), **kw)  # type: ignore[arg-type]
    writer = BatchWriter(MemoryStore(), clock=lambda: NOON)
    metrics = Metrics()
    return Collector(config, writer, metrics=metrics), writer, metrics


async def test_collector_counts_valid_and_invalid_and_never_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    collector, writer, metrics = make(tmp_path)
    collector.start()
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for raw in (datagram(NO_POLICY_OK), b"{broken", b"\xff" * 10,
                    datagram(sts_policy(failed=True, details=[MISMATCH]))):  # fmt: skip
            sender.sendto(raw, collector.path)
        await until(lambda: collector.stats.received == 4, "4 datagrams")
    finally:
        sender.close()
        await collector.aclose()
    assert (collector.stats.received, collector.stats.invalid) == (4, 2)
    assert writer.pending == 2
    assert metrics.datagrams == {"received": 4, "invalid": 2}
    assert metrics.sessions == [("no-policy-found", "successful"), ("sts", "failed")]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per minute, with a sample
    assert "sample: b'{broken'" in warnings[0].getMessage()
    assert not Path(collector.path).exists()  # noqa: ASYNC240 - a local stat, after the test


async def test_collector_socket_mode_and_stale_socket_replaced(tmp_path: Path) -> None:
    collector, _, _ = make(tmp_path, socket_mode=0o620)
    os.makedirs(os.path.dirname(collector.path))
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(collector.path)
    stale.close()
    collector.start()
    try:
        assert stat.S_IMODE(os.stat(collector.path).st_mode) == 0o620
        assert collector.receive_buffer >= 8 * 1024 * 1024
    finally:
        await collector.aclose()


async def test_collector_oversize_datagram_is_invalid(tmp_path: Path) -> None:
    collector, writer, _ = make(tmp_path)
    collector.start()
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MAX_DATAGRAM_BYTES)
    try:
        sender.sendto(b" " * (MAX_DATAGRAM_BYTES + 10), collector.path)
        sender.sendto(datagram(NO_POLICY_OK), collector.path)
        await until(lambda: collector.stats.received == 2, "2 datagrams")
    finally:
        sender.close()
        await collector.aclose()
    assert collector.stats.invalid == 1 and writer.pending == 1


async def test_collector_burst_is_read_completely(tmp_path: Path) -> None:
    collector, writer, _ = make(tmp_path)
    collector.start()
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(True)  # waits for room: nothing is lost, the collector must keep up
    raw = datagram(NO_POLICY_OK)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(
            None, lambda: [sender.sendto(raw, collector.path) for _ in range(3000)]
        )
        await until(lambda: collector.stats.received == 3000, "3000 datagrams")
    finally:
        sender.close()
        await collector.aclose()
    assert writer.pending == 3000
    assert isinstance(writer._pending, Batch)


def _hostile_datagram() -> bytes:
    """A 250 KB datagram: one failed session with 8,006 distinct failure details."""
    details = [{"c": 202, "n": f"mx{n}.example"} for n in range(8006)]
    raw = datagram(sts_policy(failed=True, details=details))
    assert MAX_DATAGRAM_BYTES - 20_000 < len(raw) <= MAX_DATAGRAM_BYTES
    return raw


async def test_large_datagrams_never_stall_the_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Eight hostile datagrams queued before a wake-up: one wake-up read them all (400 to
    520 ms before issue 27); now each wake-up stops on its budget (about 6 ms), and the
    details beyond the cap are dropped as they are decoded."""
    collector, writer, metrics = make(tmp_path)
    raw = _hostile_datagram()
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        collector.bind()
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * MAX_DATAGRAM_BYTES)
        sender.setblocking(False)
        sent = 0
        with contextlib.suppress(BlockingIOError):  # the queue holds max_dgram_qlen + 1
            while sent < 8:
                sender.sendto(raw, collector.path)
                sent += 1
        assert sent >= 4
        async with looplag.measure() as lag:
            collector.start()
            await until(lambda: collector.stats.received == sent, f"{sent} datagrams")
    finally:
        sender.close()
        await collector.aclose()
    assert lag.worst < looplag.MAX_LOOP_LAG_S
    assert writer.pending == sent and metrics.sessions == [("sts", "failed")] * sent
    assert collector.stats.details_dropped == sent * (8006 - MAX_FAILURE_DETAILS)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"TLSRPT datagram for example.com: {8006 - MAX_FAILURE_DETAILS} failure details "
        f"beyond the first {MAX_FAILURE_DETAILS} dropped ({8006 - MAX_FAILURE_DETAILS} so "
        "far); its sessions are counted"
    ]
