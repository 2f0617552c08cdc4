"""sd_notify, watchdog and socket activation, against real sockets and systemd-socket-activate.

Anything that puts sockets on fd 3 runs in a child process, never in the pytest process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tlspolicy.server import systemd

CHILD_TIMEOUT_S = 20.0


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2.0)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def test_notify_sends_ready_to_notify_socket(notify_socket: socket.socket) -> None:
    assert systemd.notify("READY=1") is True
    assert notify_socket.recv(4096) == b"READY=1"


def test_notify_ready_with_status_is_one_datagram(notify_socket: socket.socket) -> None:
    assert systemd.notify_ready("listening on\n127.0.0.1:8642")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=listening on 127.0.0.1:8642"


def test_notify_reloading_carries_monotonic_usec(notify_socket: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert systemd.notify_reloading()
    lines = notify_socket.recv(4096).decode().split("\n")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert lines[0] == "RELOADING=1"
    key, _, usec = lines[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(usec) <= after


def test_notify_stopping_and_status(notify_socket: socket.socket) -> None:
    assert systemd.notify_stopping() and systemd.notify_status("draining")
    assert [notify_socket.recv(4096), notify_socket.recv(4096)] == [
        b"STOPPING=1",
        b"STATUS=draining",
    ]


def test_notify_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"tlspolicy-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="unset"),
        pytest.param("", id="empty"),
        pytest.param("vsock:2:1234", id="vsock-unsupported"),
        pytest.param("/nonexistent/notify.sock", id="nobody-listening"),
    ],
)
def test_notify_without_usable_socket_returns_false(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert systemd.notify("READY=1") is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        pytest.param("30000000", None, 30.0, id="no-pid"),
        pytest.param("30000000", "self", 30.0, id="our-pid"),
        pytest.param("30000000", "1", None, id="other-pid"),
        pytest.param("0", None, None, id="zero"),
        pytest.param("abc", None, None, id="garbage"),
        pytest.param(None, None, None, id="unset"),
    ],
)
def test_watchdog_interval_reads_environment(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)
    assert systemd.watchdog_interval() == expected


async def test_watchdog_loop_pings_at_half_the_interval(notify_socket: socket.socket) -> None:
    notify_socket.setblocking(False)
    task = asyncio.create_task(systemd.watchdog_loop(0.4))
    await asyncio.sleep(0.9)  # pings at 0, 0.2, 0.4, 0.6, 0.8 (every interval: only 3)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    pings = []
    with contextlib.suppress(BlockingIOError):
        while True:
            pings.append(notify_socket.recv(4096))
    assert set(pings) == {b"WATCHDOG=1"}
    assert 4 <= len(pings) <= 6


def run_child(script: str, **kwargs: object) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


LISTEN_CHILD = """
    import json, os, socket
    from tlspolicy.server import systemd
    from tlspolicy.errors import ConfigError

    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0)); tcp.listen()
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind("\\0tlspolicy-listen-%d" % os.getpid()); unix.listen()
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.bind(("::1", 0))
    for i, s in enumerate((tcp, unix, udp)):
        os.dup2(s.fileno(), 3 + i, inheritable=True)
    os.environ.update(LISTEN_PID=str(os.getpid() + __PID_OFFSET__), LISTEN_FDS="3",
                      LISTEN_FDNAMES=__FDNAMES__)
    try:
        got = systemd.listen_fds_with_names()
    except ConfigError as exc:
        got, error = [], str(exc)
    else:
        error = None
    print(json.dumps({
        "got": [[n, s.fileno(), int(s.family), int(s.type), s.getblocking(),
                 s.get_inheritable(), s.getsockname() == orig.getsockname()]
                for (n, s), orig in zip(got, (tcp, unix, udp))],
        "env": [k for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES") if k in os.environ],
        "error": error,
    }))
"""


def listen_child(pid_offset: int = 0, fdnames: str = "tcp:unix:udp") -> dict[str, object]:
    script = LISTEN_CHILD.replace("__PID_OFFSET__", str(pid_offset)).replace(
        "__FDNAMES__", repr(fdnames)
    )
    return run_child(script)


def test_listen_fds_adopts_passed_sockets_with_family_and_type() -> None:
    out = listen_child()
    assert out["got"] == [
        ["tcp", 3, int(socket.AF_INET), int(socket.SOCK_STREAM), False, False, True],
        ["unix", 4, int(socket.AF_UNIX), int(socket.SOCK_STREAM), False, False, True],
        ["udp", 5, int(socket.AF_INET6), int(socket.SOCK_DGRAM), False, False, True],
    ]
    assert out["env"] == []


def test_listen_fds_without_names_calls_them_unknown() -> None:
    out = listen_child(fdnames="")
    assert [entry[0] for entry in out["got"]] == ["unknown"] * 3  # type: ignore[union-attr]


def test_listen_fds_for_another_pid_is_empty_and_clears_environment() -> None:
    out = listen_child(pid_offset=1)
    assert out == {"got": [], "env": [], "error": None}


@pytest.mark.parametrize(
    ("env", "error"),
    [
        pytest.param({"LISTEN_PID": "x1"}, "LISTEN_PID: not a process id", id="bad-pid"),
        pytest.param({"LISTEN_FDS": "two"}, "LISTEN_FDS: not a number", id="bad-count"),
        pytest.param({"LISTEN_FDS": "1", "FD3": "pipe"}, "is not a usable socket", id="pipe"),
        pytest.param(
            {"LISTEN_FDS": "1", "FD3": "connected"}, "is not a listening socket", id="accept-yes"
        ),
    ],
)
def test_listen_fds_rejects_malformed_activation(env: dict[str, str], error: str) -> None:
    script = f"""
        import json, os, socket
        from tlspolicy.server import systemd
        from tlspolicy.errors import ConfigError
        env = {env!r}
        kind = env.pop("FD3", None)
        if kind == "pipe":
            r, w = os.pipe(); os.dup2(r, 3)
        elif kind == "connected":
            a, b = socket.socketpair(); os.dup2(a.fileno(), 3)
        os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
        os.environ.update(env)
        try:
            systemd.listen_fds()
            error = None
        except ConfigError as exc:
            error = str(exc)
        print(json.dumps({{"error": error, "env": "LISTEN_FDS" in os.environ}}))
    """
    out = run_child(script)
    assert error in str(out["error"])
    assert out["env"] is False


def test_listen_fds_without_activation_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        monkeypatch.delenv(var, raising=False)
    assert systemd.listen_fds() == []


SOCKET_ACTIVATE = shutil.which("systemd-socket-activate") or "/lib/systemd/systemd-socket-activate"

# The child systemd-socket-activate starts: adopt the sockets, answer one netstring on each.
ACTIVATED_CHILD = """
import os, socket, sys
from tlspolicy.server import systemd
activated = systemd.listen_fds_with_names()
leftover = [k for k in ("LISTEN_PID", "LISTEN_FDS") if k in os.environ]
for name, listener in activated:
    listener.setblocking(True)
    conn, _ = listener.accept()
    with conn:
        data = b""
        while not data.endswith(b","):
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        length, _, payload = data[:-1].partition(b":")
        assert int(length) == len(payload)
        reply = b"OK " + name.encode() + b" " + payload.split(b" ", 1)[1]
        if leftover:
            reply = b"PERM environment kept"
        conn.sendall(b"%d:%s," % (len(reply), reply))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ask(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(b"%d:%s," % (len(payload), payload))
    data = b""
    while not data.endswith(b","):
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def connect_retrying(family: int, address: object) -> socket.socket:
    deadline = time.monotonic() + CHILD_TIMEOUT_S / 2
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(CHILD_TIMEOUT_S / 2)
        try:
            sock.connect(address)
            return sock
        except (ConnectionRefusedError, FileNotFoundError):
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.skipif(not os.path.exists(SOCKET_ACTIVATE), reason="needs the Debian systemd package")
def test_listen_fds_under_systemd_socket_activate(tmp_path: Path) -> None:
    port = free_port()
    unix_path = str(tmp_path / "policy.sock")
    proc = subprocess.Popen(
        [
            SOCKET_ACTIVATE,
            "-l",
            f"127.0.0.1:{port}",
            "-l",
            unix_path,
            "--fdname=tcp:unix",
            sys.executable,
            "-c",
            ACTIVATED_CHILD,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        with connect_retrying(socket.AF_INET, ("127.0.0.1", port)) as tcp:
            assert ask(tcp, b"QUERY example.org") == b"18:OK tcp example.org,"
        with connect_retrying(socket.AF_UNIX, unix_path) as unix:
            assert ask(unix, b"QUERY example.net") == b"19:OK unix example.net,"
        assert proc.wait(CHILD_TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate(timeout=CHILD_TIMEOUT_S)
    assert b"Traceback" not in stderr, stderr.decode()
