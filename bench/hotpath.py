"""The cached-answer path in microseconds, in-process: where a hot request's CPU goes.

``.venv/bin/python -m bench.hotpath`` starts a tiny lab, lets a real server store one DANE and
one MTA-STS domain, loads those entries into an in-process ``PolicyService`` (memory cache,
uvloop) and times each step a hot request goes through, on the same core as the server in
``bench/run``. Use it to check a hot-path change without the whole suite; the socket side
(syscalls, uvloop) is what ``bench/run``'s hot passes add on top.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from bench import fill, servers
from bench.lab import (
    BOGUS_CANARY,
    SECURE_CANARY,
    dane_domain,
    fill_domain,
    start_bench_lab,
    sts_domain,
)
from tlspolicy.cache.entry import CacheEntry
from tlspolicy.config import Config, load_config
from tlspolicy.server.app import build_app
from tlspolicy.socketmap.answer import format_reply
from tlspolicy.socketmap.connection import SocketmapConnection, encode_reply
from tlspolicy.socketmap.keys import normalize_key

ROUNDS = 50_000
SERVER_CORE = 0


def _timed(label: str, rounds: int, step: Callable[[], object]) -> None:
    started = time.perf_counter()
    for _ in range(rounds):
        step()
    print(f"{label:<44} {(time.perf_counter() - started) / rounds * 1e6:8.2f} µs")


async def _timed_async(label: str, rounds: int, step: Callable[[], Awaitable[object]]) -> None:
    started = time.perf_counter()
    for _ in range(rounds):
        await step()
    print(f"{label:<44} {(time.perf_counter() - started) / rounds * 1e6:8.2f} µs")


async def measure(config: Config, templates: list[dict[str, object]]) -> None:
    app = await build_app(config)
    try:
        for template in templates:
            await app.cache.put(CacheEntry.from_json(template))
        service, answers, profile = app.service, app.answers, config.profile("QUERY")
        assert profile is not None
        sts, dane = sts_domain(0), dane_domain(0)
        for key in (sts, dane):
            await answers.answer("QUERY", key)  # fills the memo answer_wire serves from
            request = f"{len(f'QUERY {key}')}:QUERY {key},".encode()
            assert answers.answer_wire(request) is not None, f"{key}: no memo"
            _timed(f"answers.answer_wire({key}) (the server's hot path)", ROUNDS,
                   lambda r=request: answers.answer_wire(r))  # type: ignore[misc]  # fmt: skip
        _timed("answers.answer_now (parsed requests)", ROUNDS,
               lambda: answers.answer_now("QUERY", sts))  # fmt: skip
        for key in (sts, dane):

            def answer(k: str = key) -> Awaitable[str]:
                return answers.answer("QUERY", k)

            await _timed_async(f"answers.answer({key}) (full path)", ROUNDS, answer)
        await _timed_async(
            "  service.resolve (MTA-STS)", ROUNDS, lambda: service.resolve(sts, profile)
        )
        resolution = await service.resolve(sts, profile)
        _timed(
            "  format_reply (MTA-STS)", ROUNDS, lambda: format_reply(resolution.decision, profile)
        )
        _timed("  normalize_key", ROUNDS, lambda: normalize_key(sts))
        await _timed_async("  cache.get (hot layer)", ROUNDS, lambda: app.cache.get(sts))

        async def timeout_block() -> None:
            async with asyncio.timeout(20):  # noqa: ASYNC100 - its own cost is measured
                pass

        await _timed_async("  asyncio.timeout enter/exit", ROUNDS, timeout_block)
        conn = SocketmapConnection()
        request = f"QUERY {sts}".encode()
        wire = b"%d:%s," % (len(request), request)
        reply = await answers.answer("QUERY", sts)

        def codec() -> None:
            conn.receive_data(wire)
            conn.next_request()
            encode_reply(reply)

        _timed("server: netstring parse + encode", ROUNDS, codec)

        async def nothing() -> None:
            return None

        await _timed_async(
            "server: create_task + await", ROUNDS, lambda: asyncio.create_task(nothing())
        )
        loop = asyncio.get_running_loop()
        _timed(
            "server: call_later + cancel (idle timer)",
            ROUNDS,
            lambda: loop.call_later(300, print).cancel(),
        )
    finally:
        await app.aclose()  # fmt: skip


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tlspolicy-hotpath-"))
    with start_bench_lab(work, n_dane=1, n_sts=1) as lab:
        seed = servers.ours(
            work, "seed", SERVER_CORE, nameserver=lab.resolver, ca_file=lab.ca_file,
            cache={"backend": "sqlite", "path": str(work / "seed.sqlite3")},
            secure_canary=SECURE_CANARY, bogus_canary=BOGUS_CANARY,
        )  # fmt: skip
        try:
            seed.start(fill_domain(0))
            for domain in (dane_domain(0), sts_domain(0)):
                print(f"{domain}: {servers.socketmap_request(seed.port, domain)}")
        finally:
            seed.stop()
        templates = fill.read_templates(work / "seed.sqlite3", [dane_domain(0), sts_domain(0)])
        conf = next(a for a in seed.argv if a.endswith(".yml"))
        config = load_config(conf)
        config = dataclasses.replace(
            config, cache=dataclasses.replace(config.cache, backend="memory")
        )
        os.sched_setaffinity(0, {SERVER_CORE})
        uvloop.run(measure(config, templates))


if __name__ == "__main__":
    main()
