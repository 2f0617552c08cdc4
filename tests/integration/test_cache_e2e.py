"""Issue 5 end to end: the policy cache behind the running server, on every backend.

The same behaviours run against memory, sqlite, a real Redis and a real PostgreSQL, through
the real ``tlspolicy serve``: raw socketmap requests for the exact payloads, ``postmap -q``
for what Postfix sees, ``tlspolicy query --json`` for why. Upstream work is counted where it
happens: DNS queries at the lab's Unbound (``log-queries`` switched on at run time: one log
line per query received, with name and type) and policy fetches at the HTTPS lab.

The helpers are in ``cachetools.py``, shared with ``test_cache_sqlite_e2e.py`` (restarts,
``kill -9``, damaged files), ``test_cache_admin_e2e.py`` (``tlspolicy cache ...``) and
``test_cache_shared_e2e.py`` (Redis/PostgreSQL outages, two servers on one store).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cachetools import (
    BACKENDS,
    COUNT_TIMEOUT_S,
    SETTLE_S,
    STS_CHANGED,
    STS_GOOD,
    STS_GOOD_MX,
    STS_HOST,
    TEMP_BOGUS,
    DnsLog,
    assert_explained,
    cache_section,
    cache_show,
    concurrent_requests,
    explain,
    live_answers,
    sleep_until,
)
from tests.lab.https import Behavior
from tests.lab.netutil import wait_until
from tests.lab.postfix import PostmapKind
from tests.lab.scenario import Lab, sts_policy, sts_txt

pytestmark = pytest.mark.integration


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
    assert dns.count(mark, "_mta-sts.dane-only.lab", "TXT") == 0  # DANE decides alone
    assert dns.count(mark, "dane-only.lab", "MX") == 1

    sleep_until(answered + 2.2)  # max_ttl 2: the DANE branch has expired
    assert server.request("dane-only.lab") == "OK dane-only"
    assert dns.count(mark, "dane-only.lab", "MX") == 2
    assert dns.count(mark, "_mta-sts.dane-only.lab", "TXT") == 0
    assert live_answers(server, "dane-only.lab") == 2
    assert server.postmap("dane-only.lab").value == "dane-only"
    assert dns.count(mark, "dane-only.lab", "MX") == 2
    assert_explained(server, "dane-only.lab")


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
    assert_explained(server, "plain.lab")
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
    assert_explained(server, "sts-good.lab")


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
    assert_explained(server, "dane-only.lab")
