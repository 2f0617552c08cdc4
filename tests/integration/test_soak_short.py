"""The CI version of the soak (``bench/soak.py`` runs the million-query one): a memory leak test.

50,000 queries over 64 persistent connections across 2,000 cached domains with
``cache.hot_ttl: 1``, so memos and hot copies expire and are re-made during the run (the
memo index leak grew here). The cache file is written with clones of two real entries
(``bench/fill.py``). Asserted: every answer right, no connection error, and RSS after the
run within a generous ratio of RSS after a warm-up pass (no timing thresholds).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from bench import fill

from tests.integration.server import ServerProcess

pytestmark = pytest.mark.integration

DOMAINS = 2_000
CONNECTIONS = 64
WARMUP = 160 * CONNECTIONS  # 10,240
QUERIES = 625 * CONNECTIONS  # 40,000 after the warm-up: 50,240 in all
MAX_GROWTH = 1.25  # RSS end / RSS after warm-up; a per-query or per-expiry leak is far more
REQUEST_TIMEOUT_S = 30.0
TEMPLATES = ("dane-only.lab", "sts-good.lab")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


async def _load(server: ServerProcess, names: list[str], count: int) -> tuple[int, list[str]]:
    """``count`` queries over ``CONNECTIONS`` connections; (answered, bad answers/errors)."""
    bad: list[str] = []
    answered = 0
    per_connection = count // CONNECTIONS

    async def one(index: int) -> None:
        nonlocal answered
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            for n in range(per_connection):
                domain = names[(index * per_connection + n) % len(names)]
                payload = f"QUERY {domain}".encode()
                writer.write(b"%d:%s," % (len(payload), payload))
                head = await reader.readuntil(b":")
                reply = (await reader.readexactly(int(head[:-1]) + 1))[:-1].decode()
                answered += 1
                if not reply.startswith("OK "):
                    bad.append(f"{domain}: {reply}")
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            bad.append(f"connection {index}: {type(exc).__name__}: {exc}")
        finally:
            writer.close()

    async with asyncio.timeout(REQUEST_TIMEOUT_S * 10):
        await asyncio.gather(*(one(i) for i in range(CONNECTIONS)))
    return answered, bad


def test_soak_short_rss_bounded_while_memos_expire(start_server: Any, tmp_path: Path) -> None:
    seed_path = tmp_path / "seed.sqlite3"
    seed = start_server(cache={"backend": "sqlite", "path": str(seed_path)})
    for domain in TEMPLATES:
        assert seed.request(domain).startswith("OK "), domain
    assert seed.stop() == 0  # flushes the file
    templates = fill.read_templates(seed_path, list(TEMPLATES))
    names = [f"soak{i}.lab" for i in range(DOMAINS)]
    cache_path = tmp_path / "soak.sqlite3"
    fill.write_clones(cache_path, templates, names)

    server = start_server(
        cache={"backend": "sqlite", "path": str(cache_path), "hot_ttl": 1},
        mta_sts={"recheck_interval": 3600},  # clones keep their templates' check times
    )
    answered, bad = asyncio.run(_load(server, names, WARMUP))
    assert (answered, bad[:5]) == (WARMUP, [])
    warm = _rss_kib(server.process.pid)
    answered, bad = asyncio.run(_load(server, names, QUERIES))
    assert (answered, bad[:5]) == (QUERIES, [])
    end = _rss_kib(server.process.pid)
    print(f"RSS after warm-up {warm} KiB, at the end {end} KiB ({end / warm:.3f})")  # for -s
    assert end / warm < MAX_GROWTH, f"RSS {warm} KiB after warm-up, {end} KiB at the end"
    assert server.process.poll() is None
