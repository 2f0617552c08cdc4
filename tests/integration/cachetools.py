"""Helpers for the cache end-to-end suites (``test_cache_*_e2e.py``): counting upstream
work (DNS queries at the lab's Unbound, fetches at the HTTPS lab), the ``tlspolicy cache``
and ``tlspolicy query`` commands, the standard explanations, and one empty store per backend.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis import Redis

from tests.integration.server import ServerProcess, read_netstring, tlspolicy_command
from tests.lab.netutil import wait_until
from tests.lab.scenario import Lab
from tests.lab.services import PostgresServer, RedisServer

STS_GOOD_MX = ["mx1.sts-good.lab", "mx2.sts-good.lab"]
STS_GOOD = "secure match=mx1.sts-good.lab:mx2.sts-good.lab servername=hostname"
STS_HOST = "mta-sts.sts-good.lab"
STS_WILD = "secure match=.sts-wild.lab servername=hostname"
STS_CHANGED = "secure match=mx1.sts-good.lab servername=hostname"  # id v2, one mx
TEMP_BOGUS = "TEMP MX lookup failed: servfail (EDE 6 DNSSEC Bogus)"
E2E_REDIS_DB = 7  # not the db test_cache_backends.py uses, so the suites never meet
E2E_PG_DATABASE = "tlspolicy_e2e"
COUNT_TIMEOUT_S = 5.0  # background lookups (MTA-STS alongside DANE, re-checks) finish in ms
# A test asserting that nothing more was looked up waits this long for stray background work.
SETTLE_S = 0.3

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

_QUERY_LINE = re.compile(r" info: \S+ (\S+)\. ([A-Z0-9]+) IN$")


# --- counting upstream work -------------------------------------------------------------


class DnsLog:
    """The queries the lab's Unbound received, by name and type, read from its log.

    ``log-queries`` is switched on at run time with ``unbound-control set_option``; Unbound
    writes the line when a query arrives, so once we hold an answer its queries are logged.
    """

    def __init__(self, lab: Lab) -> None:
        self.unbound = lab.dns.unbound
        self.path: Path = self.unbound.daemon.log

    @classmethod
    def enabled(cls, lab: Lab) -> DnsLog:
        log = cls(lab)
        log.unbound.control("set_option", "log-queries:", "yes")
        return log

    def mark(self) -> int:
        return self.path.stat().st_size

    def since(self, mark: int) -> list[tuple[str, str]]:
        with self.path.open("rb") as handle:
            handle.seek(mark)
            text = handle.read().decode(errors="replace")
        return [
            (found[1].lower(), found[2])
            for line in text.splitlines()
            if (found := _QUERY_LINE.search(line))
        ]

    def count(self, mark: int, name: str, rdtype: str) -> int:
        return self.since(mark).count((name, rdtype))

    def wait_count(self, mark: int, name: str, rdtype: str, expected: int) -> None:
        """Wait for a background lookup to reach Unbound (fails on more than ``expected``)."""
        wait_until(
            lambda: self.count(mark, name, rdtype) >= expected,
            timeout=COUNT_TIMEOUT_S,
            what=f"{expected} {rdtype} queries for {name}",
        )
        assert self.count(mark, name, rdtype) == expected


def live_answers(server: ServerProcess, domain: str) -> int:
    """Answers that needed a synchronous lookup: the service logs each at INFO (cache: DEBUG)."""
    pattern = re.compile(
        rf" INFO tlspolicy\.service: {re.escape(domain)}: [a-z-]+ \(.*\) in [0-9.]+ ms$", re.M
    )
    return len(pattern.findall(server.log()))


def sleep_until(deadline: float) -> None:
    """Wait for a cache lifetime to pass."""
    time.sleep(max(0.0, deadline - time.monotonic()))


def concurrent_requests(servers: list[ServerProcess], key: str, n: int) -> list[str]:
    """``n`` requests for ``key`` to each server, over as many connections, released together
    by one barrier; the replies in server order."""
    barrier = threading.Barrier(n * len(servers))

    def one(server: ServerProcess) -> str:
        with socket.create_connection((server.host, server.port), timeout=30) as sock:
            payload = f"QUERY {key}".encode()
            barrier.wait(timeout=30)
            sock.sendall(b"%d:%s," % (len(payload), payload))
            return read_netstring(sock).decode()

    with ThreadPoolExecutor(n * len(servers)) as pool:
        return list(pool.map(one, [server for server in servers for _ in range(n)]))


# --- the CLI ----------------------------------------------------------------------------


def cache_cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``tlspolicy cache ARGS`` with the running server's configuration file."""
    return subprocess.run(
        tlspolicy_command("cache", "-c", str(server.config_path), *args),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def cache_show(server: ServerProcess, domain: str) -> dict[str, Any]:
    done = cache_cli(server, "show", domain)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


_EXPLAINED: dict[tuple[str, str], dict[str, Any]] = {}


def explain(server: ServerProcess, domain: str, variant: str = "") -> dict[str, Any]:
    """``tlspolicy query DOMAIN --json``. It decides with a memory cache of its own, so the
    explanation does not depend on the server's backend: it is run once per domain and lab
    ``variant`` (a name for the runtime change a test made to the catalogue, if any)."""
    key = (domain, variant)
    if key not in _EXPLAINED:
        done = server.cli_query(domain, "--json")
        assert "Traceback" not in done.stderr
        _EXPLAINED[key] = {"returncode": done.returncode, **json.loads(done.stdout)}
    return _EXPLAINED[key]


# What ``tlspolicy query`` says of the lab domains the suites use most: reply, reason and the
# lookups that must be DNSSEC-secure.
EXPLAINED: dict[str, dict[str, Any]] = {
    "dane-only.lab": {
        "reply": "OK dane-only",
        "reason": "usable TLSA at all 2 MX hosts",
        "secure": [("dane-only.lab", "MX"), ("_25._tcp.mx1.dane-only.lab", "TLSA")],
    },
    "dane-mixed.lab": {
        "reply": "OK dane",
        "reason": "secure TLSA at 1 of 2 MX hosts, 1 usable",
        "secure": [("dane-mixed.lab", "MX"), ("_25._tcp.mx1.dane-mixed.lab", "TLSA")],
    },
    "sts-good.lab": {
        "reply": "OK " + STS_GOOD,
        "reason": "MTA-STS policy mode enforce",
        "secure": [("_mta-sts.sts-good.lab", "TXT"), ("sts-good.lab", "MX")],
    },
    "sts-wild.lab": {
        "reply": "OK " + STS_WILD,
        "reason": "MTA-STS policy mode enforce",
        "secure": [("_mta-sts.sts-wild.lab", "TXT"), ("sts-wild.lab", "MX")],
    },
    "plain.lab": {
        "reply": "NOTFOUND ",
        "reason": "no MTA-STS record",
        "secure": [("plain.lab", "MX"), ("_mta-sts.plain.lab", "TXT")],
    },
}


def assert_explained(
    server: ServerProcess, domain: str, *, variant: str = "", **expected: Any
) -> dict[str, Any]:
    """The CLI gives the same reply, the reason, and each listed lookup as DNSSEC-secure;
    ``expected`` (reply, reason, secure) defaults to ``EXPLAINED[domain]``."""
    want = {**EXPLAINED.get(domain, {}), **expected}
    reply: str = want["reply"]
    reason: str = want["reason"]
    secure: list[tuple[str, str]] = want["secure"]
    data = explain(server, domain, variant)
    code = {"OK": 0, "NOTFOUND": 1, "TEMP": 75}[reply.split(" ", 1)[0]]
    assert (data["returncode"], data["reply"], data["reason"]) == (code, reply, reason)
    words = reply.split(" ", 2)
    assert data["verdict"] == (words[1] if words[0] == "OK" else words[0].lower())
    status = {(e["name"], e["detail"]): e["status"] for e in data["lookups"] if e["kind"] == "dns"}
    for lookup in secure:
        assert status.get(lookup) == "secure", (lookup, status)
    return data


# --- backends ---------------------------------------------------------------------------


def cache_section(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The ``cache`` configuration for ``kind``, on an empty store."""
    if kind == "memory":
        return {"backend": "memory"}
    if kind == "sqlite":
        return {"backend": "sqlite", "path": str(tmp_path / "cache.sqlite3")}
    if kind == "redis":
        return {"backend": "redis", "url": redis_url(request)}
    if kind == "postgres":
        return {"backend": "postgres", "url": postgres_url(request)}
    raise ValueError(kind)


def redis_url(request: pytest.FixtureRequest) -> str:
    """The e2e database of the session's Redis, running and emptied."""
    server: RedisServer = request.getfixturevalue("redis_server")
    if not server.running:
        server.start()
    url = server.url.rsplit("/", 1)[0] + f"/{E2E_REDIS_DB}"
    with Redis.from_url(url) as client:
        client.flushdb()
    return url


def postgres_url(request: pytest.FixtureRequest) -> str:
    """A database of its own on the session's PostgreSQL, running and without our tables."""
    server: PostgresServer = request.getfixturevalue("postgres_server")
    if not server.running:
        server.start()
    url = server.url.rsplit("/", 1)[0] + f"/{E2E_PG_DATABASE}"
    asyncio.run(_reset_postgres(server.url, url))
    return url


async def _reset_postgres(admin_url: str, url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", E2E_PG_DATABASE):
            await conn.execute(f"CREATE DATABASE {E2E_PG_DATABASE}")
    finally:
        await conn.close()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP TABLE IF EXISTS tlspolicy_entries, tlspolicy_leases")
    finally:
        await conn.close()
