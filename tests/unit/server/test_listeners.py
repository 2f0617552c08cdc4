from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tlspolicy.config import ListenAddress, ServerConfig
from tlspolicy.errors import ProtocolError
from tlspolicy.metrics.registry import Metrics
from tlspolicy.server.listeners import SocketmapServer


class Answers:
    def __init__(self) -> None:
        self.delay = 0.0
        self.seen: list[tuple[str, str]] = []
        self.gate = asyncio.Event()  # keys starting with "block" wait for it

    async def __call__(self, name: str, key: str) -> str:
        self.seen.append((name, key))
        if key.startswith("block"):
            await self.gate.wait()
        if key.startswith("crash"):
            raise RuntimeError(f"bug for {key}")
        if key == "protocol-error":
            raise ProtocolError("an answerer that still raises it")
        if key == "cancelled":  # awaits a task that someone else cancels
            inner = asyncio.create_task(asyncio.sleep(60))
            asyncio.get_running_loop().call_soon(inner.cancel)
            await inner
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


async def wait_until(predicate: Callable[[], object], within: float = 5.0) -> None:
    """Poll a condition with a bounded wait (no timing thresholds in assertions)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - the conditions are plain attributes
            await asyncio.sleep(0.01)


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
        pytest.param(b"5:QUERY;", id="bad-terminator"),
        pytest.param(b"05:QUERY,", id="leading-zero"),
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


async def test_server_stop_answers_a_new_connections_first_request() -> None:
    # A connection accepted just before the stop is most likely a client's retry: its
    # request, sent a moment later, is answered; an idle used connection closes at once.
    server = SocketmapServer(Answers(), ServerConfig())
    names = await server.start([ListenAddress("tcp", "127.0.0.1", 0)])
    port = int(names[0].rsplit(":", 1)[1])
    used_reader, used_writer = await asyncio.open_connection("127.0.0.1", port)
    used_writer.write(frame(b"QUERY used.example"))
    assert await read_reply(used_reader) == b"OK used.example-answer"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await wait_until(lambda: len(server.connections) == 2)
    stopping = asyncio.create_task(server.stop(grace=5))
    assert await asyncio.wait_for(used_reader.read(), 2) == b""
    writer.write(frame(b"QUERY late.example"))
    assert await read_reply(reader) == b"OK late.example-answer"
    assert await asyncio.wait_for(reader.read(), 2) == b""  # then closed: retry elsewhere
    await asyncio.wait_for(stopping, 5)
    await close(writer)
    await close(used_writer)


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


async def test_server_wire_answers_only_whole_requests_in_turn() -> None:
    answers = Answers()
    answers.delay = 0.02
    seen: list[bytes] = []

    def by_wire(request: bytes) -> bytes | None:
        seen.append(request)
        return b"8:OK wired," if request == frame(b"QUERY w.example") else None

    server = SocketmapServer(answers, ServerConfig(), answer_wire=by_wire)
    names = await server.start([ListenAddress("tcp", "127.0.0.1", 0)])
    port = int(names[0].rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(b"QUERY w.example"))
    assert await read_reply(reader) == b"OK wired"
    assert answers.seen == []  # answered by its bytes alone
    writer.write(frame(b"QUERY other.example"))  # not memoised: parsed and answered
    assert await read_reply(reader) == b"OK other.example-answer"
    # Behind a slow request the same bytes wait their turn (replies stay in order).
    writer.write(frame(b"QUERY slow.example") + frame(b"QUERY w.example"))
    assert await read_reply(reader) == b"OK slow.example-answer"
    assert await read_reply(reader) == b"OK w.example-answer"
    half = frame(b"QUERY w.example")
    writer.write(half[:5])  # half a request is never looked up by its bytes ...
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(half[5:])  # ... nor is its other half
    assert await read_reply(reader) == b"OK w.example-answer"
    two = frame(b"QUERY slow.example") + frame(b"QUERY w.example")  # no memo is two requests
    assert seen == [frame(b"QUERY w.example"), frame(b"QUERY other.example"), two, half[:5]]
    await close(writer)
    await server.stop(grace=1)


# --- the connection cap ----------------------------------------------------------------


def limit_count(metrics: Metrics, action: str) -> float:
    value = metrics.registry.get_sample_value(
        "tlspolicy_connection_limit_total", {"action": action}
    )
    return value or 0.0


async def start_capped(cap: int, **kwargs: Any) -> tuple[SocketmapServer, Answers, Metrics, int]:
    answers, metrics = Answers(), Metrics()
    config = ServerConfig(max_connections=cap, idle_timeout=kwargs.pop("idle_timeout", 60.0))
    server = SocketmapServer(answers, config, metrics=metrics, **kwargs)
    names = await server.start([ListenAddress("tcp", "127.0.0.1", 0)])
    return server, answers, metrics, int(names[0].rsplit(":", 1)[1])


async def test_server_at_cap_closes_longest_idle_connection_for_newcomer(caplog) -> None:
    server, answers, metrics, port = await start_capped(3)
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    # The oldest connection has a request in progress: it is owed a reply, never closed.
    conns[0][1].write(frame(b"QUERY block.example"))
    await wait_until(lambda: ("QUERY", "block.example") in answers.seen)
    for reader, writer in conns[1:]:
        writer.write(frame(b"QUERY x.example"))
        await read_reply(reader)
    with caplog.at_level(logging.WARNING, logger="tlspolicy.server"):
        newcomers = []
        for expected_victim in (1, 2):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(frame(b"QUERY new.example"))
            assert await read_reply(reader) == b"OK new.example-answer"
            assert await asyncio.wait_for(conns[expected_victim][0].read(), 5) == b""
            newcomers.append((reader, writer))
    assert sum("connection limit 3 reached" in r.message for r in caplog.records) == 1
    assert limit_count(metrics, "evicted") == 2
    assert len(server.connections) == 3
    answers.gate.set()
    assert await read_reply(conns[0][0]) == b"OK block.example-answer"
    for _, writer in conns + newcomers:
        await close(writer)
    await server.stop(grace=1)


async def test_server_at_cap_refuses_only_when_every_connection_is_busy() -> None:
    server, answers, metrics, port = await start_capped(2)
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    for i, (_, writer) in enumerate(conns):
        writer.write(frame(b"QUERY block%d.example" % i))
    await wait_until(lambda: len(answers.seen) == 2)
    extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", port)
    extra_writer.write(frame(b"QUERY x.example"))
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(read_reply(extra_reader), 5)
    assert limit_count(metrics, "refused") == 1
    answers.gate.set()
    for i, (reader, _) in enumerate(conns):
        assert await read_reply(reader) == b"OK block%d.example-answer" % i
    for _, writer in [*conns, (extra_reader, extra_writer)]:
        await close(writer)
    await server.stop(grace=1)


async def test_server_at_cap_a_stalled_half_request_does_not_hold_a_slot() -> None:
    server, _, metrics, port = await start_capped(1)
    stalled_reader, stalled_writer = await asyncio.open_connection("127.0.0.1", port)
    stalled_writer.write(b"20:QUERY half")
    await wait_until(lambda: any(c.conn._buffer for c in server.connections))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(b"QUERY n.example"))
    assert await read_reply(reader) == b"OK n.example-answer"
    assert await asyncio.wait_for(stalled_reader.read(), 5) == b""
    assert limit_count(metrics, "evicted") == 1
    for w in (stalled_writer, writer):
        await close(w)
    await server.stop(grace=1)


# --- unexpected errors -----------------------------------------------------------------


async def test_server_internal_error_is_temp_and_the_connection_goes_on(served, caplog) -> None:
    _, _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    keys = [
        b"a.example",
        b"crash1",
        b"b.example",
        b"crash2",
        b"protocol-error",
        b"cancelled",
        b"c.example",
    ]
    with caplog.at_level(logging.ERROR, logger="tlspolicy.server"):
        writer.write(b"".join(frame(b"QUERY " + k) for k in keys))  # back to back: in order
        replies = [await asyncio.wait_for(read_reply(reader), 5) for _ in keys]
    assert replies == [
        b"OK a.example-answer",
        b"TEMP internal error",
        b"OK b.example-answer",
        b"TEMP internal error",
        b"TEMP internal error",
        b"TEMP internal error",
        b"OK c.example-answer",
    ]
    tracebacks = [r for r in caplog.records if r.exc_info]
    # Three distinct errors: RuntimeError twice from one place is logged once.
    assert sorted(type(r.exc_info[1]).__name__ for r in tracebacks) == [  # type: ignore[index]
        "CancelledError",
        "ProtocolError",
        "RuntimeError",
    ]
    writer.write(frame(b"QUERY d.example"))
    assert await read_reply(reader) == b"OK d.example-answer"
    await close(writer)


async def test_server_quick_path_error_falls_back_to_the_async_answer() -> None:
    def quick(name: str, key: str) -> str | None:
        raise KeyError(key)

    server = SocketmapServer(Answers(), ServerConfig(), answer_now=quick)
    names = await server.start([ListenAddress("tcp", "127.0.0.1", 0)])
    reader, writer = await asyncio.open_connection("127.0.0.1", int(names[0].rsplit(":", 1)[1]))
    for key in (b"q1.example", b"q2.example"):
        writer.write(frame(b"QUERY " + key))
        assert await read_reply(reader) == b"OK " + key + b"-answer"
    await close(writer)
    await server.stop(grace=1)


async def test_server_non_utf8_request_is_answered_and_the_connection_kept(served) -> None:
    _, answers, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(b"QUERY \xff\xfe.example") + frame(b"QUERY ok.example"))
    # Non-UTF-8 is well framed: the key reaches the answerer (which says NOTFOUND for it).
    assert await read_reply(reader) == "OK \ufffd\ufffd.example-answer".encode()
    assert await read_reply(reader) == b"OK ok.example-answer"
    assert ("QUERY", "\ufffd\ufffd.example") in answers.seen
    await close(writer)


# --- a client that never reads ---------------------------------------------------------


async def test_server_stops_reading_from_a_client_that_does_not_read_replies() -> None:
    reply = "OK " + "r" * 2000

    def quick(name: str, key: str) -> str | None:
        return reply

    server, _, _, port = await start_capped(10, answer_now=quick, idle_timeout=60.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    count = 20000  # 40 MB of replies if nothing held the server back
    writer.write(frame(b"QUERY k.example") * count)
    await wait_until(lambda: any(c.reading_paused for c in server.connections), 20)
    (conn,) = list(server.connections)
    assert conn.transport is not None
    assert conn.transport.get_write_buffer_size() < 1_000_000
    # Once it reads, every reply comes, in order, none lost.
    for _ in range(count):
        assert await asyncio.wait_for(read_reply(reader), 10) == reply.encode()
    await close(writer)
    await server.stop(grace=1)


async def test_server_aborts_a_client_that_never_reads_after_idle_timeout() -> None:
    def quick(name: str, key: str) -> str | None:
        return "OK " + "r" * 2000

    server, _, _, port = await start_capped(10, answer_now=quick, idle_timeout=0.5)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(b"QUERY k.example") * 20000)
    await wait_until(lambda: any(c.write_paused for c in server.connections), 20)
    await wait_until(lambda: len(server.connections) == 0, 10)
    writer.transport.abort()
    await server.stop(grace=1)
