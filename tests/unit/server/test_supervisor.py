"""supervisor: the parts that need no worker processes (the e2e test runs real ones)."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tlspolicy.config import load_config
from tlspolicy.server import supervisor
from tlspolicy.server.supervisor import Supervisor, _wait_ready


async def test_ready_byte_means_ready() -> None:
    read, write = os.pipe()
    os.write(write, b"R")
    try:
        assert await _wait_ready(read) is True
    finally:
        os.close(read)
        os.close(write)


async def test_eof_means_the_worker_died() -> None:
    read, write = os.pipe()
    os.close(write)
    try:
        assert await _wait_ready(read) is False
    finally:
        os.close(read)


async def test_no_ready_byte_in_time_is_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "READY_TIMEOUT_S", 0.05)
    read, write = os.pipe()
    try:
        assert await _wait_ready(read) is False
    finally:
        os.close(read)
        os.close(write)


class FakeWorker:
    def __init__(self) -> None:
        self.signals: list[int] = []

    def signal(self, signum: int) -> None:
        self.signals.append(signum)


def _supervisor(tmp_path: Path, text: str) -> tuple[Supervisor, Path]:
    path = tmp_path / "tlspolicy.yml"
    path.write_text(text)
    return Supervisor(load_config(str(path)), str(path)), path


def test_reload_forwards_sighup_to_every_worker(tmp_path: Path) -> None:
    sup, _ = _supervisor(tmp_path, "server:\n  workers: 2\n")
    workers = [FakeWorker(), FakeWorker()]
    sup.current = dict(enumerate(workers))  # type: ignore[arg-type]
    sup.reload()
    assert [w.signals for w in workers] == [[signal.SIGHUP], [signal.SIGHUP]]


def test_invalid_new_file_is_refused_and_nothing_is_forwarded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sup, path = _supervisor(tmp_path, "server:\n  workers: 2\n")
    worker = FakeWorker()
    sup.current = {0: worker}  # type: ignore[dict-item]
    path.write_text("server:\n  workers: zero\n")
    with caplog.at_level(logging.ERROR, logger="tlspolicy.supervisor"):
        sup.reload()
    assert worker.signals == []
    assert "reload refused" in caplog.text


def test_rolling_restart_is_ignored_until_the_workers_are_ready(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sup, _ = _supervisor(tmp_path, "server:\n  workers: 2\n")
    with caplog.at_level(logging.WARNING, logger="tlspolicy.supervisor"):
        sup.rolling_restart()
    assert sup.restarting is None
    assert "rolling restart ignored" in caplog.text


async def test_rolling_restart_replaces_slots_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup, _ = _supervisor(tmp_path, "server:\n  workers: 3\n")
    started: list[int] = []

    async def start(slot: int) -> bool:
        started.append(slot)
        return slot != 1  # slot 1's new worker fails: the rest keeps the old ones

    monkeypatch.setattr(sup, "_start", start)
    sup.ready = True
    sup.rolling_restart()
    assert sup.restarting is not None
    await sup.restarting
    assert started == [0, 1]


def test_workers_get_no_systemd_variables() -> None:
    # systemd talks to the supervisor only (the environment is built in ``_start``).
    private: Any = supervisor._PRIVATE_VARS
    assert {"NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS", "LISTEN_PID"} <= set(private)
