"""Issue 5 end to end: the policy cache behind the running server, on every backend.

The same behaviours run against memory, sqlite, a real Redis and a real PostgreSQL, through
the real ``tlspolicy serve``: raw socketmap requests for the exact payloads, ``postmap -q``
for what Postfix sees, ``tlspolicy query --json`` for why. Upstream work is counted where it
happens: DNS queries at the lab's Unbound (``log-queries`` switched on at run time: one log
line per query received, with name and type) and policy fetches at the HTTPS lab.

The helpers at the top are shared with ``test_cache_sqlite_e2e.py`` (restarts, ``kill -9``,
damaged files), ``test_cache_admin_e2e.py`` (``tlspolicy cache ...``) and
``test_cache_shared_e2e.py`` (Redis/PostgreSQL outages, two servers on one store).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis import Redis

from tests.integration.server import ServerProcess, read_netstring, tlspolicy_command
from tests.lab.https import Behavior
from tests.lab.netutil import wait_until
from tests.lab.postfix import PostmapKind
from tests.lab.scenario import Lab, sts_policy, sts_txt
from tests.lab.services import PostgresServer, RedisServer

pytestmark = pytest.mark.integration

STS_GOOD_MX = ["mx1.sts-good.lab", "mx2.sts-good.lab"]
STS_GOOD = "secure match=mx1.sts-good.lab:mx2.sts-good.lab servername=hostname"
STS_HOST = "mta-sts.sts-good.lab"
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


def assert_explained(
    server: ServerProcess,
    domain: str,
    *,
    reply: str,
    reason: str,
    secure: list[tuple[str, str]],
    variant: str = "",
) -> dict[str, Any]:
    """The CLI gives the same reply, the reason, and each listed lookup as DNSSEC-secure."""
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


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    return cache_section(request.param, request, tmp_path)


# --- the behaviours ---------------------------------------------------------------------


def test_cache_e2e_dane_branch_looked_up_again_after_its_ttl(
    start_server: Any, fresh_lab: Lab, backend: dict[str, Any]
) -> None:
    dns = DnsLog.enabled(fresh_lab)
    server = start_server(
        cache={**backend, "refresh_ahead": False}, dane={"min_ttl": 1, "max_ttl": 2}
    )
    mark = dns.mark()
    assert server.request("dane-only.lab") == "OK dane-only"
    answered = time.monotonic()
    assert server.request("dane-only.lab") == "OK dane-only"  # within the TTL: cached
    dns.wait_count(mark, "_mta-sts.dane-only.lab", "TXT", 1)  # MTA-STS looked at alongside
    assert dns.count(mark, "dane-only.lab", "MX") == 1

    sleep_until(answered + 2.2)  # max_ttl 2: the DANE branch has expired
    assert server.request("dane-only.lab") == "OK dane-only"
    assert dns.count(mark, "dane-only.lab", "MX") == 2
    assert dns.count(mark, "_mta-sts.dane-only.lab", "TXT") == 1  # its own, longer lifetime
    assert live_answers(server, "dane-only.lab") == 2
    assert server.postmap("dane-only.lab").value == "dane-only"
    assert dns.count(mark, "dane-only.lab", "MX") == 2
    assert_explained(
        server,
        "dane-only.lab",
        reply="OK dane-only",
        reason="usable TLSA at all 2 MX hosts",
        secure=[("dane-only.lab", "MX"), ("_25._tcp.mx1.dane-only.lab", "TLSA")],
    )


def test_cache_e2e_sts_branch_rechecked_in_background_and_new_id_fetched(
    start_server: Any, fresh_lab: Lab, backend: dict[str, Any]
) -> None:
    dns = DnsLog.enabled(fresh_lab)
    server = start_server(cache=backend, mta_sts={"recheck_interval": 1})
    mark = dns.mark()
    assert server.request("sts-good.lab") == "OK " + STS_GOOD
    answered = time.monotonic()
    assert server.request("sts-good.lab") == "OK " + STS_GOOD  # within recheck_interval
    assert fresh_lab.https.count(STS_HOST) == 1
    assert dns.count(mark, "_mta-sts.sts-good.lab", "TXT") == 1

    # A new policy under a new id. The cached one is still valid (max_age 86400): it is
    # answered while the id is re-checked in the background (RFC 8461 §5.1).
    fresh_lab.dns.set_records("_mta-sts.sts-good.lab", "TXT", [sts_txt("v2")])
    fresh_lab.https.set(STS_HOST, Behavior(body=sts_policy("enforce", ["mx1.sts-good.lab"])))
    fresh_lab.dns.apply()
    sleep_until(answered + 1.1)
    assert server.request("sts-good.lab") == "OK " + STS_GOOD
    dns.wait_count(mark, "_mta-sts.sts-good.lab", "TXT", 2)
    wait_until(
        lambda: fresh_lab.https.count(STS_HOST) == 2, timeout=COUNT_TIMEOUT_S, what="the fetch"
    )
    wait_until(
        lambda: server.request("sts-good.lab") == "OK " + STS_CHANGED,
        timeout=COUNT_TIMEOUT_S,
        what="the new policy in the cache",
    )
    assert fresh_lab.https.count(STS_HOST) == 2
    assert dns.count(mark, "sts-good.lab", "MX") == 1  # the DANE branch is still valid
    assert live_answers(server, "sts-good.lab") == 1  # every other answer came from the cache
    assert server.postmap("sts-good.lab").value == STS_CHANGED
    data = assert_explained(
        server,
        "sts-good.lab",
        reply="OK " + STS_CHANGED,
        reason="MTA-STS policy mode enforce",
        secure=[("_mta-sts.sts-good.lab", "TXT"), ("sts-good.lab", "MX")],
        variant="id v2",
    )
    assert (data["mta_sts"]["record_id"], data["mta_sts"]["policy_id"]) == ("v2", "v2")
    if backend["backend"] != "memory":
        assert cache_show(server, "sts-good.lab")["sts"]["policy_id"] == "v2"


def test_cache_e2e_sts_branch_fetched_again_after_max_age(
    start_server: Any, fresh_lab: Lab, tmp_path: Path
) -> None:
    """Runs on the default backend only: the rule is in the MTA-STS state, not in storage
    (the round trip of the MTA-STS branch through each backend is covered above)."""
    backend = {"backend": "sqlite", "path": str(tmp_path / "cache.sqlite3")}
    fresh_lab.https.set(STS_HOST, Behavior(body=sts_policy("enforce", STS_GOOD_MX, max_age=2)))
    dns = DnsLog.enabled(fresh_lab)
    server = start_server(cache=backend)
    mark = dns.mark()
    assert server.request("sts-good.lab") == "OK " + STS_GOOD
    answered = time.monotonic()
    assert fresh_lab.https.count(STS_HOST) == 1
    sleep_until(answered + 2.3)  # max_age 2: expired; fetch again before answering
    assert server.request("sts-good.lab") == "OK " + STS_GOOD
    assert fresh_lab.https.count(STS_HOST) == 2
    assert dns.count(mark, "_mta-sts.sts-good.lab", "TXT") == 2
    assert dns.count(mark, "sts-good.lab", "MX") == 1  # the DANE branch is still valid
    assert live_answers(server, "sts-good.lab") == 2
    assert server.postmap("sts-good.lab").value == STS_GOOD
    data = assert_explained(
        server,
        "sts-good.lab",
        reply="OK " + STS_GOOD,
        reason="MTA-STS policy mode enforce",
        secure=[("_mta-sts.sts-good.lab", "TXT"), ("sts-good.lab", "MX")],
        variant="max_age 2",
    )
    assert data["mta_sts"]["max_age"] == 2


def test_cache_e2e_negative_answers_cached_for_their_lifetime(
    start_server: Any, lab: Lab, backend: dict[str, Any]
) -> None:
    dns = DnsLog.enabled(lab)
    # Full TTLs from Unbound (also on the negative answers, whose TTL comes from the lab.
    # SOA): an answer whose cached TTL has run down to 0 makes the DANE verdict fall back to
    # dane.negative_ttl (1800 s) instead of min_ttl (180 s): dane/decision.py takes TTL 0
    # for "no TTL known".
    lab.dns.unbound.control("flush_zone", "lab.")
    server = start_server(cache=backend)
    mark = dns.mark()
    assert server.request("plain.lab") == "NOTFOUND "
    assert server.request("nxdomain.lab") == "NOTFOUND "
    first = dns.since(mark)
    for lookup in [
        ("plain.lab", "MX"),
        ("_mta-sts.plain.lab", "TXT"),
        ("nxdomain.lab", "MX"),
        ("_mta-sts.nxdomain.lab", "TXT"),
    ]:
        assert first.count(lookup) == 1, lookup

    again = dns.mark()
    for _ in range(3):
        assert server.request("plain.lab") == "NOTFOUND "
        assert server.request("nxdomain.lab") == "NOTFOUND "
    assert server.postmap("plain.lab").kind is PostmapKind.NOTFOUND
    time.sleep(SETTLE_S)
    assert dns.since(again) == []
    assert live_answers(server, "plain.lab") == live_answers(server, "nxdomain.lab") == 1

    # TEMP is never cached: the next query looks up again.
    assert server.request("bogus.lab") == TEMP_BOGUS
    retry = dns.mark()
    assert server.postmap("bogus.lab").kind is PostmapKind.TEMP
    assert dns.count(retry, "bogus.lab", "MX") == 1

    if backend["backend"] != "memory":  # the lifetimes, as stored (memory: in the server only)
        entry = cache_show(server, "plain.lab")
        assert round(entry["dane"]["expires_at"] - entry["dane"]["checked_at"]) == 180, entry
        assert round(entry["sts"]["negative_until"] - entry["sts"]["checked_at"]) == 60
        assert entry["sts"]["error_kind"] == "no-record"
    assert_explained(
        server,
        "plain.lab",
        reply="NOTFOUND ",
        reason="no MTA-STS record",
        secure=[("plain.lab", "MX"), ("_mta-sts.plain.lab", "TXT")],
    )
    assert_explained(
        server,
        "nxdomain.lab",
        reply="NOTFOUND ",
        reason="no MTA-STS record",
        secure=[("nxdomain.lab", "MX")],
    )
    bogus = explain(server, "bogus.lab")
    assert (bogus["returncode"], bogus["reply"]) == (75, TEMP_BOGUS)
    assert {(e["name"], e["status"]) for e in bogus["lookups"] if e["kind"] == "dns"} >= {
        ("bogus.lab", "error")
    }


def test_cache_e2e_concurrent_queries_coalesce_into_one_lookup(
    start_server: Any, fresh_lab: Lab, backend: dict[str, Any]
) -> None:
    dns = DnsLog.enabled(fresh_lab)
    server = start_server(cache=backend)
    mark = dns.mark()
    replies = concurrent_requests([server], "sts-good.lab", 20)
    assert replies == ["OK " + STS_GOOD] * 20
    time.sleep(SETTLE_S)
    queries = Counter(dns.since(mark))
    assert queries[("sts-good.lab", "MX")] == 1
    assert queries[("_mta-sts.sts-good.lab", "TXT")] == 1
    assert queries[("_25._tcp.mx1.sts-good.lab", "TLSA")] == 1
    assert max(queries.values()) == 1, queries  # one set of lookups, nothing twice
    assert fresh_lab.https.count(STS_HOST) == 1
    assert server.postmap("sts-good.lab").value == STS_GOOD
    assert fresh_lab.https.count(STS_HOST) == 1
    assert_explained(
        server,
        "sts-good.lab",
        reply="OK " + STS_GOOD,
        reason="MTA-STS policy mode enforce",
        secure=[("_mta-sts.sts-good.lab", "TXT"), ("sts-good.lab", "MX")],
    )


def test_cache_e2e_used_entry_refreshed_ahead_of_expiry(
    start_server: Any, lab: Lab, backend: dict[str, Any]
) -> None:
    dns = DnsLog.enabled(lab)
    # DANE results live exactly 2 s; a used one is refreshed in the last 90% of its life.
    server = start_server(
        cache={**backend, "refresh_before": 0.9}, dane={"min_ttl": 2, "max_ttl": 2}
    )
    mark = dns.mark()
    assert server.request("dane-only.lab") == "OK dane-only"
    first_lookup = time.time()
    replies = []
    until = time.monotonic() + 4.0
    while time.monotonic() < until:
        replies.append(server.request("dane-only.lab"))
        time.sleep(0.1)
    assert set(replies) == {"OK dane-only"}
    assert live_answers(server, "dane-only.lab") == 1  # never a synchronous lookup again
    assert dns.count(mark, "dane-only.lab", "MX") >= 3  # at least two background refreshes
    assert server.postmap("dane-only.lab").value == "dane-only"
    if backend["backend"] != "memory":  # the stored entry moved on (memory: in-server only)
        dane = cache_show(server, "dane-only.lab")["dane"]
        assert dane["checked_at"] > first_lookup + 2.0  # past the first result's lifetime
        assert dane["expires_at"] - dane["checked_at"] == pytest.approx(2.0)
        assert dane["result"]["level"] == "dane-only"
    assert_explained(
        server,
        "dane-only.lab",
        reply="OK dane-only",
        reason="usable TLSA at all 2 MX hosts",
        secure=[("dane-only.lab", "MX"), ("_25._tcp.mx1.dane-only.lab", "TLSA")],
    )
