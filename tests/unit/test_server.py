from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tlspolicy.config import ListenAddress, ServerConfig
from tlspolicy.errors import ProtocolError
from tlspolicy.server.socketmap import SocketmapServer


class Answers:
    def __init__(self) -> None:
        self.delay = 0.0
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, name: str, key: str) -> str:
        self.seen.append((name, key))
        if key == "bad-label":
            raise ProtocolError("key has a label longer than 63 octets")
        if self.delay:
            await asyncio.sleep(self.delay)
        return f"OK {key}-answer" if key else "NOTFOUND "


@pytest.fixture
async def served() -> AsyncIterator[tuple[SocketmapServer, Answers, int]]:
    answers = Answers()
    server = SocketmapServer(answers, ServerConfig(max_connections=3, idle_timeout=0.5))
    names = await server.start([ListenAddress("tcp", "127.0.0.1", 0)])
    port = int(names[0].rsplit(":", 1)[1])
    yield server, answers, port
    await server.stop(grace=1)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def frame(payload: bytes) -> bytes:
    return b"%d:%s," % (len(payload), payload)


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    length = await reader.readuntil(b":")
    data = await reader.readexactly(int(length[:-1]) + 1)
    assert data.endswith(b",")
    return data[:-1]


async def test_server_answers_many_requests_on_one_connection(served) -> None:
    _, _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for key in (b"a.example", b"b.example", b""):
        writer.write(frame(b"QUERY " + key))
        reply = await read_reply(reader)
        assert reply == (b"OK " + key + b"-answer" if key else b"NOTFOUND ")
    await close(writer)


async def test_server_answers_back_to_back_requests_in_order(served) -> None:
    _, answers, port = served
    answers.delay = 0.01
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    keys = [f"k{i}.example".encode() for i in range(20)]
    writer.write(b"".join(frame(b"QUERY " + k) for k in keys))
    for key in keys:
        assert await read_reply(reader) == b"OK " + key + b"-answer"
    await close(writer)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"abc:QUERY x,", id="bad-length"),
        pytest.param(b"10001:", id="oversized"),
        pytest.param(b"7:QUERY \xff,", id="non-utf8"),
        pytest.param(b"5:QUERY;", id="bad-terminator"),
        pytest.param(frame(b"QUERY bad-label"), id="overlong-label"),
    ],
)
async def test_server_closes_only_the_bad_connection(served, garbage: bytes, caplog) -> None:
    _, _, port = served
    good_reader, good_writer = await asyncio.open_connection("127.0.0.1", port)
    bad_reader, bad_writer = await asyncio.open_connection("127.0.0.1", port)
    with caplog.at_level(logging.WARNING, logger="tlspolicy.server"):
        bad_writer.write(garbage)
        assert await asyncio.wait_for(bad_reader.read(), 2) == b""
    assert sum("closing socketmap connection" in r.message for r in caplog.records) == 1
    good_writer.write(frame(b"QUERY still.example"))
    assert await read_reply(good_reader) == b"OK still.example-answer"
    await close(good_writer)
    await close(bad_writer)


async def test_server_bounds_connections(served) -> None:
    _, _, port = served
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    for reader, writer in conns:
        writer.write(frame(b"QUERY x.example"))
        await read_reply(reader)
    extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", port)
    extra_writer.write(frame(b"QUERY x.example"))
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(read_reply(extra_reader), 2)
    for _, writer in conns:
        await close(writer)
    await close(extra_writer)


async def test_server_closes_idle_connections(served) -> None:
    _, _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(), 3) == b""
    await close(writer)


async def test_server_stop_finishes_in_flight_answer() -> None:
    answers = Answers()
    answers.delay = 0.3
    server = SocketmapServer(answers, ServerConfig())
    names = await server.start([ListenAddress("tcp", "127.0.0.1", 0)])
    port = int(names[0].rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(b"QUERY slow.example"))
    await asyncio.sleep(0.05)
    await server.stop(grace=5)
    assert await read_reply(reader) == b"OK slow.example-answer"
    assert await reader.read() == b""
    await close(writer)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_server_unix_socket_with_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tlspolicy.sock"
    server = SocketmapServer(Answers(), ServerConfig(socket_mode=0o660))
    await server.start([ListenAddress("unix", path=str(path))])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(frame(b"QUERY u.example"))
    assert await read_reply(reader) == b"OK u.example-answer"
    await close(writer)
    await server.stop(grace=1)
    assert not path.exists()


async def test_server_ipv6_listener() -> None:
    server = SocketmapServer(Answers(), ServerConfig())
    names = await server.start([ListenAddress("tcp", "::1", 0)])
    port = int(names[0].rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("::1", port)
    writer.write(frame(b"QUERY six.example"))
    assert await read_reply(reader) == b"OK six.example-answer"
    await close(writer)
    await server.stop(grace=1)


async def test_server_quick_answers_keep_order() -> None:
    answers = Answers()
    answers.delay = 0.02
    quick_calls: list[str] = []

    def quick(name: str, key: str) -> str | None:
        quick_calls.append(key)
        return f"OK {key}-quick" if key.startswith("q") else None

    server = SocketmapServer(answers, ServerConfig(), answer_now=quick)
    names = await server.start([ListenAddress("tcp", "127.0.0.1", 0)])
    port = int(names[0].rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(b"QUERY q1.example"))
    assert await read_reply(reader) == b"OK q1.example-quick"
    assert answers.seen == []  # answered without the async path
    # A slow request first: the quick one behind it must wait its turn.
    writer.write(frame(b"QUERY slow.example") + frame(b"QUERY q2.example"))
    assert await read_reply(reader) == b"OK slow.example-answer"
    assert await read_reply(reader) in (b"OK q2.example-answer", b"OK q2.example-quick")
    await close(writer)
    await server.stop(grace=1)
