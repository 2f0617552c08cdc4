"""``tlspolicy tlsrpt collect`` and ``tlspolicy serve`` as real processes, fed real datagrams.

The clock is frozen with ``TLSPOLICY_TLSRPT_NOW`` (runtime.py), so every datagram lands on
one known day. Waiting is polling the store through ``tlspolicy tlsrpt status --json`` (or
for the socket to appear) up to a deadline: no fixed sleeps.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from tests.integration.server import ServerProcess
from tests.lab.scenario import Lab
from tests.schemas import validate_report
from tests.unit.tlsrpt.helpers import MISMATCH, NO_POLICY_OK, datagram, sts_policy
from tlspolicy.tlsrpt.postgres_backend import TABLES

pytestmark = pytest.mark.integration

NOW = "2026-12-01T12:00:00Z"
TOMORROW = "2026-12-02T12:00:00Z"
DEADLINE_S = 20.0


def env(now: str = NOW) -> dict[str, str]:
    return {**os.environ, "TLSPOLICY_TLSRPT_NOW": now, "PYTHONUNBUFFERED": "1"}


def tlspolicy(*args: str, now: str = NOW) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tlspolicy", *args],
        capture_output=True, text=True, env=env(now), timeout=60, check=False,
    )  # fmt: skip


def write_config(path: Path, **tlsrpt: Any) -> Path:
    section = {"collector_socket": str(path.parent / "run" / "tlsrpt.sock"),
               "submitter": "mx.example.net", **tlsrpt}  # fmt: skip
    config = {"cache": {"path": str(path.parent / "state" / "cache.sqlite3")}, "tlsrpt": section}
    path.write_text(yaml.safe_dump(config))
    return path


def wait_for(
    check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Collect:
    """One ``tlspolicy tlsrpt collect -c FILE`` process."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.socket = yaml.safe_load(config.read_text())["tlsrpt"]["collector_socket"]
        self.log = config.parent / f"collect-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tlspolicy", "tlsrpt", "collect", "-c", str(config)],
                stdout=out, stderr=subprocess.STDOUT, env=env(),
            )  # fmt: skip
        # The log line, not the socket file: after a kill -9 a stale socket file remains.
        wait_for(lambda: "TLSRPT collector on" in self.log.read_text(), "the collector", self.proc)

    def send(self, *raws: bytes) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(True)  # the test must not lose datagrams itself
            for raw in raws:
                s.sendto(raw, self.socket)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=DEADLINE_S)


def status(config: Path) -> dict[str, Any]:
    done = tlspolicy("tlsrpt", "status", "--json", "-c", str(config))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def counts(config: Path) -> tuple[int, int]:
    today = status(config)["days"][0]
    return (
        sum(d["successful"] for d in today["domains"]),
        sum(d["failed"] for d in today["domains"]),
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "tlspolicy.yml")


def test_tlsrpt_collect_stores_counts_and_stops_cleanly(config: Path) -> None:
    collect = Collect(config)
    try:
        collect.send(*[datagram(NO_POLICY_OK)] * 50, b"not json", b"{}")
        collect.send(*[datagram(sts_policy(failed=True, details=[MISMATCH]))] * 7)
        collect.send(*[datagram(NO_POLICY_OK, domain="other.example")] * 3)
    finally:
        assert collect.stop() == 0  # SIGTERM: the queue is drained and the batch flushed
    assert not os.path.exists(collect.socket)
    log = collect.log.read_text()
    assert "62 received, 2 invalid, 60 stored, queue full" in log
    assert log.count("invalid TLSRPT datagram") == 1  # rate-limited, with a sample
    day = status(config)["days"][0]
    assert day["day"] == "2026-12-01" and day["label"] == "today"
    by_domain = {d["domain"]: (d["successful"], d["failed"]) for d in day["domains"]}
    assert by_domain == {"example.com": (50, 7), "other.example": (3, 0)}
    text = tlspolicy("tlsrpt", "status", "-c", str(config))
    assert "example.com: 50 successful, 7 failed sessions" in text.stdout
    shown = tlspolicy("tlsrpt", "show", "example.com", "--json", "-c", str(config), now=TOMORROW)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    validate_report(report)
    failures = [f for p in report["policies"] for f in p.get("failure-details", [])]
    assert failures[0]["result-type"] == "certificate-host-mismatch"
    assert failures[0]["failed-session-count"] == 7
    missing = tlspolicy("tlsrpt", "show", "nothing.example", "-c", str(config), now=TOMORROW)
    assert missing.returncode == 1


def test_tlsrpt_collect_counts_survive_kill_9(config: Path) -> None:
    collect = Collect(config)
    try:
        collect.send(*[datagram(NO_POLICY_OK)] * 20)
        wait_for(lambda: counts(config) == (20, 0), "20 stored sessions", collect.proc)
    finally:
        collect.stop(signal.SIGKILL)
    collect = Collect(config)  # replaces the stale socket
    try:
        collect.send(*[datagram(NO_POLICY_OK)] * 5)
    finally:
        assert collect.stop() == 0
    assert counts(config) == (25, 0)


def test_tlsrpt_collect_socket_mode_from_config(tmp_path: Path) -> None:
    config = write_config(tmp_path / "tlspolicy.yml", socket_mode="0622")
    collect = Collect(config)
    try:
        assert os.stat(collect.socket).st_mode & 0o777 == 0o622
    finally:
        collect.stop()


def test_tlsrpt_collect_without_socket_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"cache": {"path": str(tmp_path / "c.sqlite3")}}))
    done = tlspolicy("tlsrpt", "collect", "-c", str(path))
    assert done.returncode == 78 and "tlsrpt.collector_socket" in done.stderr


@pytest.mark.postgres
def test_tlsrpt_collect_two_collectors_into_one_postgres(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_server").url
    conn = asyncio_run_drop(url)
    assert conn
    collectors = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        cfg = write_config(tmp_path / name / "c.yml", store={"backend": "postgres", "url": url})
        collectors.append(Collect(cfg))
    try:
        for c in collectors:
            c.send(
                *[datagram(NO_POLICY_OK)] * 30,
                *[datagram(sts_policy(failed=True, details=[MISMATCH]))] * 4,
            )
    finally:
        for c in collectors:
            assert c.stop() == 0
    assert counts(collectors[0].config) == (60, 8)


def asyncio_run_drop(url: str) -> bool:
    import asyncio  # noqa: PLC0415

    async def drop() -> None:
        conn = await asyncpg.connect(url)
        await conn.execute(f"DROP TABLE IF EXISTS {TABLES}")
        await conn.close()

    asyncio.run(drop())
    return True


@pytest.fixture
def serve_with_collector(lab: Lab, tmp_path: Path) -> Iterator[ServerProcess]:
    sock = str(tmp_path / "run" / "tlsrpt.sock")
    server = ServerProcess(
        lab, tmp_path,
        cache={"backend": "sqlite", "path": str(tmp_path / "state" / "cache.sqlite3")},
        tlsrpt={"collector_socket": sock, "submitter": "mx.example.net"},
    )  # fmt: skip
    try:
        yield server
    finally:
        server.stop()


def test_tlsrpt_collector_runs_inside_serve(
    serve_with_collector: ServerProcess, tmp_path: Path
) -> None:
    sock = str(tmp_path / "run" / "tlsrpt.sock")
    wait_for(lambda: os.path.exists(sock), "the collector socket in serve")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for _ in range(12):
            s.sendto(datagram(NO_POLICY_OK), sock)
    serve_with_collector.stop()
    done = tlspolicy("tlsrpt", "status", "--json", "-c", str(serve_with_collector.config_path),
                     now=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))  # fmt: skip
    assert done.returncode == 0, done.stderr
    today = json.loads(done.stdout)["days"][0]
    assert [(d["domain"], d["successful"]) for d in today["domains"]] == [("example.com", 12)]


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_tlsrpt_collect_drops_privileges_after_binding() -> None:
    # Not under pytest's basetemp: that is root-only (0700), and "nobody" must reach the store.
    directory = Path(tempfile.mkdtemp(prefix="tlsrpt-drop-"))
    try:
        directory.chmod(0o755)
        config = write_config(directory / "tlspolicy.yml")
        data = yaml.safe_load(config.read_text())
        data["server"] = {"user": "nobody", "group": "nogroup"}
        config.write_text(yaml.safe_dump(data))
        collect = Collect(config)
        try:
            collect.send(*[datagram(NO_POLICY_OK)] * 3)
        finally:
            assert collect.stop() == 0
        assert counts(config) == (3, 0)
        store = directory / "state" / "tlsrpt.sqlite3"
        # Created by store.open() after the drop, so owned by the unprivileged user.
        assert store.stat().st_uid == pwd.getpwnam("nobody").pw_uid
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
@pytest.mark.parametrize("action", [("status",), ("send", "--dry-run")])
def test_tlsrpt_commands_drop_privileges_like_serve(action: tuple[str, ...]) -> None:
    """Under sudo, ``tlsrpt send`` would talk to recipient-chosen hosts as root."""
    directory = Path(tempfile.mkdtemp(prefix="tlsrpt-drop-"))
    try:
        directory.chmod(0o755)
        config = write_config(directory / "tlspolicy.yml")
        data = yaml.safe_load(config.read_text())
        data["server"] = {"user": "nobody", "group": "nogroup"}
        config.write_text(yaml.safe_dump(data))
        (directory / "state").mkdir()  # as serve leaves it: the server user's directory
        os.chown(directory / "state", pwd.getpwnam("nobody").pw_uid, -1)
        done = tlspolicy("tlsrpt", *action, "-c", str(config))
        assert done.returncode == 0, done.stderr
        store = directory / "state" / "tlsrpt.sqlite3"
        # Created by store.open() after the drop, so owned by the unprivileged user.
        assert store.stat().st_uid == pwd.getpwnam("nobody").pw_uid
    finally:
        shutil.rmtree(directory, ignore_errors=True)
