"""The real ``tlspolicy serve`` as a subprocess, configured for the lab.

Integration tests talk to it the way Postfix does (``postmap -q`` through socketmap) and
with raw netstrings where the exact bytes matter.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.postfix import PostmapResult, postmap_query, socketmap_inet, socketmap_unix
from tests.lab.scenario import Lab

START_TIMEOUT_S = 15.0


def tlspolicy_command(*args: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "tlspolicy", *args]


class ServerProcess:
    """One running server; ``stop()`` sends SIGTERM and waits."""

    def __init__(
        self,
        lab: Lab,
        workdir: Path,
        *,
        python: str = sys.executable,
        launcher: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        config_option: bool = True,
        **overrides: Any,
    ) -> None:
        """``launcher`` goes before the command (e.g. ``unshare``), ``env`` adds to the
        environment; ``config_option=False`` leaves ``-c`` out (the file is then found
        through ``TLSPOLICY_CONFIG`` or the default path)."""
        self.lab = lab
        self.workdir = workdir
        self.config_path = lab.write_config(workdir / "tlspolicy.yml", **overrides)
        self.config = lab.config_dict()  # only for reference; the file is what runs
        listen = _read_listen(self.config_path)
        self.host, _, port = listen[0].rpartition(":")
        self.port = int(port)
        self.unix_paths = [item[5:] for item in listen if item.startswith("unix:")]
        self.log_path = workdir / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        option = ("-c", str(self.config_path)) if config_option else ()
        self.process = subprocess.Popen(
            [*launcher, *tlspolicy_command("serve", *option, python=python)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self._sock: socket.socket | None = None
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.close()
                raise RuntimeError(f"tlspolicy serve exited early:\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tlspolicy serve did not listen in time:\n{self.log()}")

    # talking to it ----------------------------------------------------------------------

    def map_spec(self, name: str = "QUERY") -> str:
        return socketmap_inet(self.host, self.port, name)

    def unix_map_spec(self, name: str = "QUERY") -> str:
        return socketmap_unix(self.unix_paths[0], name)

    def postmap(self, key: str, name: str = "QUERY") -> PostmapResult:
        return postmap_query(key, self.map_spec(name))

    def request(self, key: str, name: str = "QUERY", *, timeout: float = 30.0) -> str:
        """One socketmap exchange on a persistent connection; returns the reply payload."""
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self._sock.settimeout(timeout)
        payload = f"{name} {key}".encode()
        self._sock.sendall(b"%d:%s," % (len(payload), payload))
        return read_netstring(self._sock).decode()

    def cli_query(self, key: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            tlspolicy_command("query", key, "-c", str(self.config_path), *args),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def read_netstring(sock: socket.socket) -> bytes:
    head = b""
    while not head.endswith(b":"):
        byte = sock.recv(1)
        if not byte:
            raise ConnectionError("connection closed before a reply")
        head += byte
    length = int(head[:-1])
    data = b""
    while len(data) < length + 1:
        chunk = sock.recv(length + 1 - len(data))
        if not chunk:
            raise ConnectionError("connection closed inside a reply")
        data += chunk
    if not data.endswith(b","):
        raise ConnectionError("reply not terminated by ','")
    return data[:-1]


def _read_listen(path: Path) -> list[str]:
    import yaml  # noqa: PLC0415

    data = yaml.safe_load(path.read_text())
    return list(data["server"]["listen"])


@pytest.fixture
def start_server(fresh_lab: Lab, tmp_path: Path) -> Iterator[Any]:
    """A factory: ``start_server(**config_overrides) -> ServerProcess`` (stopped at the end)."""
    started: list[ServerProcess] = []

    def start(**overrides: Any) -> ServerProcess:
        workdir = tmp_path / f"server{len(started)}"
        workdir.mkdir()
        server = ServerProcess(fresh_lab, workdir, **overrides)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server: Any) -> ServerProcess:
    """A server with the lab defaults (memory cache)."""
    result: ServerProcess = start_server()
    return result
