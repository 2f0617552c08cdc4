"""Issue 5 end to end, shared caches: Redis and PostgreSQL behind one or two real servers.

Outages of the store, the in-process hot layer in front of it, and two servers sharing
answers and refresh work. DNS queries are counted at the lab's Unbound, policy fetches at the
HTTPS lab (helpers in ``test_cache_e2e.py``).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from tests.integration.cachetools import (
    SETTLE_S,
    STS_GOOD,
    STS_HOST,
    DnsLog,
    assert_explained,
    cache_section,
    concurrent_requests,
    live_answers,
    sleep_until,
)
from tests.lab.netutil import wait_until
from tests.lab.postfix import PostmapKind
from tests.lab.scenario import Lab
from tests.lab.services import RedisServer

pytestmark = pytest.mark.integration

ANSWERS = {
    "dane-only.lab": "OK dane-only",
    "sts-good.lab": "OK " + STS_GOOD,
    "plain.lab": "NOTFOUND ",
}
OUTAGE_WARNING = "WARNING tlspolicy.cache: cache backend redis unavailable"
RECOVERED = "INFO tlspolicy.cache: cache backend redis available again"
# A cached answer takes about a millisecond on loopback; a Redis round trip blocked by
# CLIENT PAUSE takes at least REDIS_SOCKET_TIMEOUT_S (1 s). The bound sits far from both.
HOT_ANSWER_MAX_S = 0.25
PAUSE_MS = 2500
RECOVERY_TIMEOUT_S = 10.0  # the reconnect probe backs off from 1 s
SHARED = [
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def _entry_key(domain: str) -> bytes:
    return b"tlspolicy:e:" + domain.encode()


@pytest.fixture
def redis_cache(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    return cache_section("redis", request, tmp_path)


@pytest.fixture(params=SHARED)
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    return cache_section(request.param, request, tmp_path)


@pytest.mark.redis
def test_cache_shared_e2e_redis_outage_answers_continue_then_redis_used_again(
    start_server: Any, lab: Lab, redis_server: RedisServer, redis_cache: dict[str, Any]
) -> None:
    dns = DnsLog.enabled(lab)
    server = start_server(cache=redis_cache)
    store = Redis.from_url(redis_cache["url"])
    try:
        assert server.request("dane-only.lab") == "OK dane-only"
        assert store.exists(_entry_key("dane-only.lab"))
        mark = dns.mark()

        redis_server.stop()
        try:
            started = time.monotonic()
            assert server.request("dane-only.lab") == "OK dane-only"  # cached: hot layer
            assert time.monotonic() - started < HOT_ANSWER_MAX_S
            assert server.request("sts-good.lab") == "OK " + STS_GOOD  # live lookups
            assert server.request("plain.lab") == "NOTFOUND "
            for _ in range(5):
                for domain, reply in ANSWERS.items():
                    assert server.request(domain) == reply, domain
            assert server.postmap("sts-good.lab").value == STS_GOOD
            assert server.log().count(OUTAGE_WARNING) == 1  # once, not once per query
            assert dns.count(mark, "sts-good.lab", "MX") == 1  # kept in memory meanwhile
            assert dns.count(mark, "dane-only.lab", "MX") == 0
            assert lab.https.count(STS_HOST) == 1
        finally:
            if not redis_server.running:
                redis_server.start()

        # Redis is back (empty: no persistence). New answers are stored there again once
        # the reconnect probe has run; each round asks for a domain the server has not seen.
        fresh = (f"back{n}.lab" for n in itertools.count())
        probes: list[str] = []

        def stored_again() -> bool:
            probes.append(next(fresh))
            assert server.request(probes[-1]) == "NOTFOUND "
            return bool(store.exists(_entry_key(probes[-1])))

        wait_until(stored_again, timeout=RECOVERY_TIMEOUT_S, what="entries in Redis again")
        log = server.log()
        assert log.count(OUTAGE_WARNING) == 1
        assert log.count(RECOVERED) == 1
        assert server.request("sts-good.lab") == "OK " + STS_GOOD
        assert server.postmap("plain.lab").kind is PostmapKind.NOTFOUND
    finally:
        store.close()
    assert_explained(server, "sts-good.lab")


@pytest.mark.redis
def test_cache_shared_e2e_cached_answer_needs_no_redis_round_trip(
    start_server: Any, lab: Lab, redis_cache: dict[str, Any]
) -> None:
    server = start_server(cache={**redis_cache, "hot_ttl": 30})
    for domain in ("dane-only.lab", "sts-good.lab"):
        assert server.request(domain) == ANSWERS[domain]
    with Redis.from_url(redis_cache["url"]) as admin:
        admin.execute_command("CLIENT", "PAUSE", str(PAUSE_MS), "ALL")  # Redis stops answering
        try:
            for _ in range(10):
                for domain in ("dane-only.lab", "sts-good.lab"):
                    started = time.monotonic()
                    assert server.request(domain) == ANSWERS[domain]
                    assert time.monotonic() - started < HOT_ANSWER_MAX_S
            # The control: a domain that is not cached has to ask Redis, and waits.
            started = time.monotonic()
            assert server.request("plain.lab") == "NOTFOUND "
            assert time.monotonic() - started > 2 * HOT_ANSWER_MAX_S
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
    assert server.postmap("dane-only.lab").value == "dane-only"
    assert_explained(server, "dane-only.lab")


def test_cache_shared_e2e_second_server_answers_from_the_shared_cache(
    start_server: Any, lab: Lab, shared: dict[str, Any]
) -> None:
    dns = DnsLog.enabled(lab)
    first = start_server(cache=shared)
    second = start_server(cache=shared)
    before = dns.mark()
    for domain, reply in ANSWERS.items():
        assert first.request(domain) == reply, domain
    assert dns.count(before, "_mta-sts.dane-only.lab", "TXT") == 0  # DANE decides alone
    fetches = lab.https.count(STS_HOST)
    mark = dns.mark()
    for domain, reply in ANSWERS.items():
        assert second.request(domain) == reply, domain
    assert second.postmap("sts-good.lab").value == STS_GOOD
    time.sleep(SETTLE_S)
    assert dns.since(mark) == []
    assert lab.https.count(STS_HOST) == fetches
    assert all(live_answers(second, domain) == 0 for domain in ANSWERS)
    assert_explained(second, "sts-good.lab")


def test_cache_shared_e2e_two_servers_coalesce_concurrent_queries(
    start_server: Any, fresh_lab: Lab, shared: dict[str, Any]
) -> None:
    """Concurrent first queries on two servers: one set of lookups (a lease in the store).

    The policy host answers after 0.5 s, so the second server's queries certainly arrive
    while the first server's lookup is in flight.
    """
    policy = fresh_lab.https.get(STS_HOST)
    assert policy is not None
    fresh_lab.https.set(STS_HOST, replace(policy, head_delay=0.5))
    dns = DnsLog.enabled(fresh_lab)
    first = start_server(cache=shared)
    second = start_server(cache=shared)
    mark = dns.mark()
    replies = concurrent_requests([first, second], "sts-good.lab", 10)
    assert replies == ["OK " + STS_GOOD] * 20
    time.sleep(SETTLE_S)
    queries = Counter(dns.since(mark))
    assert queries[("sts-good.lab", "MX")] == 1
    assert queries[("_mta-sts.sts-good.lab", "TXT")] == 1
    assert max(queries.values()) == 1, queries
    assert fresh_lab.https.count(STS_HOST) == 1
    assert second.postmap("sts-good.lab").value == STS_GOOD
    assert live_answers(first, "sts-good.lab") + live_answers(second, "sts-good.lab") == 20
    assert_explained(
        second,
        "sts-good.lab",
        reply="OK " + STS_GOOD,
        reason="MTA-STS policy mode enforce",
        secure=[("_mta-sts.sts-good.lab", "TXT"), ("sts-good.lab", "MX")],
        variant="slow policy host",
    )


def test_cache_shared_e2e_two_servers_refresh_a_domain_once(
    start_server: Any, lab: Lab, shared: dict[str, Any]
) -> None:
    """Both servers use the entry inside its refresh window: only one of them refreshes it,
    and the other answers from the refreshed entry, also once its own copy has expired.

    Timeline (s after the first answer): DANE results live exactly 2 s and are refreshed in
    their last 30%, so the first result's window is 1.4-2.0; the refreshed result (checked
    at 1.45-1.75) is not due before 2.85.
    """
    dns = DnsLog.enabled(lab)
    config = {
        "cache": {**shared, "refresh_before": 0.3},
        "dane": {"min_ttl": 2, "max_ttl": 2},
    }
    first = start_server(**config)
    second = start_server(**config)
    mark = dns.mark()
    assert first.request("dane-only.lab") == "OK dane-only"
    answered = time.monotonic()
    assert second.request("dane-only.lab") == "OK dane-only"  # from the shared cache
    assert dns.count(mark, "dane-only.lab", "MX") == 1

    sleep_until(answered + 1.45)
    assert first.request("dane-only.lab") == "OK dane-only"  # in the window: refresh
    dns.wait_count(mark, "dane-only.lab", "MX", 2)
    assert second.request("dane-only.lab") == "OK dane-only"  # in the window: refreshed already
    assert time.monotonic() < answered + 1.95, "too slow to stay inside the refresh window"
    sleep_until(answered + 2.2)  # the first result has expired, the refreshed one is valid
    assert second.request("dane-only.lab") == "OK dane-only"
    assert first.request("dane-only.lab") == "OK dane-only"
    time.sleep(SETTLE_S)
    assert dns.count(mark, "dane-only.lab", "MX") == 2  # one lookup, one refresh: not two
    assert live_answers(first, "dane-only.lab") == 1
    assert live_answers(second, "dane-only.lab") == 0
    assert second.postmap("dane-only.lab").value == "dane-only"
    assert_explained(second, "dane-only.lab")
