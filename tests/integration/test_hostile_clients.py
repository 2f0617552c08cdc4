"""Hostile socketmap clients against the real server process (issue 15).

Framing errors close only the offending connection; odd keys get an answer on the same
connection; a flood of idle connections does not lock out a newcomer; a client that never
reads its replies does not make the server grow. Memory is judged by the server's VmRSS
(``/proc/PID/status``) before and after, with a generous ratio; waits are bounded polls.
"""

from __future__ import annotations

import contextlib
import re
import resource
import select
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.server import ServerProcess, read_netstring
from tests.lab.netutil import free_port

pytestmark = pytest.mark.integration

CAP = 200  # server.max_connections: small keeps the flood test fast
IDLE_FLOOD = 2000  # idle connections opened against the cap
STS_GOOD = "OK secure match=mx1.sts-good.lab:mx2.sts-good.lab servername=hostname"
NEVER_READ_BYTES = 16 * 1024 * 1024  # sent at most by the client that never reads
# No progress for this long means the server stopped reading. It is shorter than the
# idle_timeout of the server that is expected to abort the client, so the order is fixed.
STALL_S = 2.0
NEVER_READ_IDLE_TIMEOUT_S = 5
# RSS after / before. The server holds a few MB of buffers by design; without flow control
# the never-reading client alone would add well over 100 MB.
RSS_RATIO = 1.5


def frame(payload: bytes) -> bytes:
    return b"%d:%s," % (len(payload), payload)


# A quick-path request (memoised after the first answer) with a reply ~9x its size.
AMPLIFIED = frame(b"QUERYwithTLSRPT sts-good.lab")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def ask(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(frame(payload))
    return read_netstring(sock)


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def metric(base: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name + ("{" + want + "}" if want else "")) + r" ([0-9.e+]+)"
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
def enough_fds() -> Iterator[None]:
    """Room for the idle flood in this process (the server inherits it, and needs ~CAP)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = IDLE_FLOOD + 500
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def hostile(start_server: Any, enough_fds: None) -> tuple[ServerProcess, str]:
    """A server with a small connection cap and the metrics endpoint."""
    metrics_port = free_port(udp=False)
    server = start_server(
        server={"max_connections": CAP, "metrics_listen": f"127.0.0.1:{metrics_port}"}
    )
    return server, f"http://127.0.0.1:{metrics_port}"


# --- the cases, each usable on its own and in the memory round -------------------------

FRAMING_ERRORS = {
    "oversize-length": b"10001:" + b"x" * 100,
    "absurd-length": b"99999999999999999999999:",
    "non-digit-length": b"1a:QUERY x,",
    "negative-length": b"-5:QUERY,",
    "leading-space": b" 5:QUERY,",
    "missing-comma": b"15:QUERY plain.lab;",
    "no-colon-garbage": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
}

# Well framed, odd keys: an answer on the same connection, never a close.
ODD_KEYS = {
    "non-utf8": (b"QUERY \xff\xfe\xfd.lab", b"NOTFOUND "),
    "control-chars": (b"QUERY pl\x01ain\x7f.lab", b"NOTFOUND "),
    "nul": (b"QUERY plain\x00.lab", b"NOTFOUND "),
    "newline": (b"QUERY plain.lab\r\nQUERY x", b"NOTFOUND "),
    "empty-key": (b"QUERY ", b"NOTFOUND "),
    "no-key": (b"QUERY", b"NOTFOUND "),
    "overlong-label": (b"QUERY " + b"a" * 64 + b".lab", b"NOTFOUND "),
    "overlong-name": (b"QUERY " + b".".join([b"b" * 63] * 4) + b".lab", b"NOTFOUND "),
    "max-size-query": (b"QUERY " + b"c" * (10000 - 6), b"NOTFOUND "),
}


def ask_once(server: ServerProcess, payload: bytes) -> bytes:
    """One request on a connection of its own, closed afterwards."""
    with connect(server) as sock:
        return ask(sock, payload)


def check_framing_error(server: ServerProcess, raw: bytes) -> None:
    with connect(server) as keeper:
        with connect(server) as bad:
            bad.sendall(raw)
            assert closed_by_server(bad), raw
        assert ask(keeper, b"QUERY sts-good.lab").decode() == STS_GOOD


def check_odd_keys(server: ServerProcess) -> None:
    with connect(server) as sock:
        for payload, reply in ODD_KEYS.values():
            assert ask(sock, payload) == reply, payload
        unknown = ask(sock, b"\xff\xfe plain.lab")  # a non-UTF-8 map name: unknown map
        assert unknown.startswith(b"PERM unknown map ")
        assert ask(sock, b"QUERY sts-good.lab").decode() == STS_GOOD


def check_back_to_back_and_byte_by_byte(server: ServerProcess) -> None:
    keys = [b"plain.lab", b"sts-good.lab", b"[192.0.2.1]", b".sts-good.lab"] * 50
    expected = [b"NOTFOUND ", STS_GOOD.encode(), b"NOTFOUND ", b"NOTFOUND "] * 50
    with connect(server) as sock:
        sock.sendall(b"".join(frame(b"QUERY " + k) for k in keys))
        assert [read_netstring(sock) for _ in keys] == expected
        for byte in frame(b"QUERY sts-good.lab") + frame(b"QUERY plain.lab"):
            sock.sendall(bytes([byte]))
        assert read_netstring(sock).decode() == STS_GOOD
        assert read_netstring(sock) == b"NOTFOUND "


def check_half_sent_request(server: ServerProcess) -> None:
    with connect(server) as half:
        half.sendall(b"18:QUERY sts-")
        assert ask_once(server, b"QUERY plain.lab") == b"NOTFOUND "  # others are served
        half.sendall(b"good.lab,")  # the rest, later: answered
        assert read_netstring(half).decode() == STS_GOOD
        half.sendall(b"18:QUERY sts-")
        half.shutdown(socket.SHUT_WR)  # and gone mid-request: the server closes its side
        assert closed_by_server(half)


def check_idle_flood(server: ServerProcess, count: int) -> list[socket.socket]:
    """``count`` idle connections, then a newcomer that must be served."""
    idle = [connect(server) for _ in range(count)]
    newcomer = connect(server)
    assert ask(newcomer, b"QUERY sts-good.lab").decode() == STS_GOOD
    idle[0].settimeout(30)
    assert closed_by_server(idle[0])  # the longest-idle connection made room
    idle.append(newcomer)
    return idle


def flood_without_reading(server: ServerProcess) -> socket.socket:
    """Send requests and never read a reply, until the server stops taking them.

    Small client buffers keep the bytes parked in this kernel small, so "the server stopped
    reading" shows long before ``NEVER_READ_BYTES``.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.settimeout(30)
    sock.connect((server.host, server.port))
    assert ask(sock, b"QUERYwithTLSRPT sts-good.lab").startswith(STS_GOOD.encode())
    assert ask(sock, b"QUERYwithTLSRPT sts-good.lab").startswith(STS_GOOD.encode())
    sock.setblocking(False)
    chunk = AMPLIFIED * (65536 // len(AMPLIFIED))
    sent = 0
    poller = select.poll()  # not select.select: the idle flood leaves fds above 1024
    poller.register(sock, select.POLLOUT)
    while sent < NEVER_READ_BYTES:
        if not poller.poll(STALL_S * 1000):
            break  # the server stopped reading from us: what flow control should do
        with contextlib.suppress(BlockingIOError):
            sent += sock.send(chunk[sent % len(chunk) :])  # whole requests, in order
    assert sent < NEVER_READ_BYTES, "the server read 16 MB from a client that reads nothing"
    return sock


# --- tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", list(FRAMING_ERRORS.values()), ids=list(FRAMING_ERRORS))
def test_hostile_framing_error_closes_only_that_connection(
    hostile: tuple[ServerProcess, str], raw: bytes
) -> None:
    server, _ = hostile
    check_framing_error(server, raw)
    assert "closing socketmap connection" in server.log()


def test_hostile_odd_keys_are_answered_on_the_same_connection(
    hostile: tuple[ServerProcess, str],
) -> None:
    server, _ = hostile
    check_odd_keys(server)
    assert "closing socketmap connection" not in server.log()


def test_hostile_back_to_back_and_byte_by_byte(hostile: tuple[ServerProcess, str]) -> None:
    check_back_to_back_and_byte_by_byte(hostile[0])


def test_hostile_half_sent_request(hostile: tuple[ServerProcess, str]) -> None:
    check_half_sent_request(hostile[0])


def test_hostile_thousands_of_idle_connections_and_a_newcomer(
    hostile: tuple[ServerProcess, str],
) -> None:
    server, base = hostile
    sockets = check_idle_flood(server, IDLE_FLOOD)
    try:
        assert metric(base, "tlspolicy_connection_limit_total", action="evicted") >= (
            IDLE_FLOOD - CAP
        )
        assert metric(base, "tlspolicy_connection_limit_total", action="refused") == 0
        assert metric(base, "tlspolicy_connections") <= CAP
        lines = server.log().count(f"connection limit {CAP} reached")
        assert 1 <= lines < 10  # once per burst, not once per newcomer
    finally:
        for sock in sockets:
            sock.close()


def test_hostile_client_that_never_reads_is_paused_then_closed(start_server: Any) -> None:
    server = start_server(server={"idle_timeout": NEVER_READ_IDLE_TIMEOUT_S})
    check_back_to_back_and_byte_by_byte(server)  # warm up
    before = rss_kib(server.process.pid)
    sock = flood_without_reading(server)
    try:
        after = rss_kib(server.process.pid)
        assert after < before * RSS_RATIO, (before, after)
        assert ask_once(server, b"QUERY sts-good.lab").decode() == STS_GOOD  # responsive
        wait_for(lambda: "replies not read" in server.log())  # aborted after idle_timeout
    finally:
        sock.close()


def test_hostile_everything_at_once_keeps_memory_bounded(
    hostile: tuple[ServerProcess, str],
) -> None:
    server, _ = hostile
    check_odd_keys(server)
    check_back_to_back_and_byte_by_byte(server)
    before = rss_kib(server.process.pid)
    for _ in range(2):
        for raw in FRAMING_ERRORS.values():
            check_framing_error(server, raw)
        check_odd_keys(server)
        check_back_to_back_and_byte_by_byte(server)
        check_half_sent_request(server)
        for sock in check_idle_flood(server, IDLE_FLOOD // 2):
            sock.close()
        flood_without_reading(server).close()
    assert ask_once(server, b"QUERY sts-good.lab").decode() == STS_GOOD
    after = rss_kib(server.process.pid)
    assert after < before * RSS_RATIO, (before, after)
