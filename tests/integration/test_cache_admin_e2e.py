"""Issue 5 end to end: ``tlspolicy cache list|show|purge|export|warm`` next to a running server.

The commands work on the configured backend (the sqlite file, or the shared Redis or
PostgreSQL) while the real ``tlspolicy serve`` uses it; the server sees their changes within
``cache.hot_ttl`` (1 s here). Helpers in ``test_cache_e2e.py``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cachetools import (
    COUNT_TIMEOUT_S,
    SETTLE_S,
    STS_GOOD,
    STS_HOST,
    DnsLog,
    assert_explained,
    cache_cli,
    cache_section,
    cache_show,
    live_answers,
)
from tests.lab.netutil import wait_until
from tests.lab.postfix import PostmapKind, postmap_query
from tests.lab.scenario import Lab

pytestmark = pytest.mark.integration

STS_WILD = "secure match=.sts-wild.lab servername=hostname"
SERVED = {
    "dane-only.lab": "OK dane-only",
    "plain.lab": "NOTFOUND ",
    "sts-good.lab": "OK " + STS_GOOD,
}
LIST_LINE = re.compile(r"(\S+) +hits=\d+ +(.+)")
WARM_FILE = "dane-mixed.lab\nsts-wild.lab   # wildcard policy\n\n# a comment\nplain.unsigned.lab\n"
WARMED = {
    "dane-mixed.lab": "OK dane",
    "plain.unsigned.lab": "NOTFOUND ",
    "sts-wild.lab": "OK " + STS_WILD,
}


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def stored(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """A backend the CLI can reach from another process (not memory)."""
    return cache_section(request.param, request, tmp_path)


def test_cache_admin_e2e_commands_against_a_running_server(
    start_server: Any, lab: Lab, stored: dict[str, Any], tmp_path: Path
) -> None:
    dns = DnsLog.enabled(lab)
    server = start_server(cache={**stored, "hot_ttl": 1})
    mark = dns.mark()
    for domain, reply in SERVED.items():
        assert server.request(domain) == reply, domain
    assert dns.count(mark, "_mta-sts.dane-only.lab", "TXT") == 0  # DANE decides alone

    # list --json: what is stored, per branch
    listing = cache_cli(server, "list", "--json")
    assert listing.returncode == 0, listing.stderr
    entries = {entry["domain"]: entry for entry in json.loads(listing.stdout)}
    assert sorted(entries) == sorted(SERVED)
    assert entries["dane-only.lab"]["dane"]["result"]["level"] == "dane-only"
    assert entries["sts-good.lab"]["dane"]["result"]["level"] == "none"
    assert entries["sts-good.lab"]["sts"]["policy_id"] == "v1"
    assert entries["plain.lab"]["sts"]["error_kind"] == "no-record"

    # list: one line per domain with the answer it gives now
    lines = [LIST_LINE.fullmatch(line) for line in cache_cli(server, "list").stdout.splitlines()]
    assert [m.groups() if m else None for m in lines] == sorted(SERVED.items())

    # show
    shown = cache_show(server, "sts-good.lab")
    assert shown["domain"] == "sts-good.lab"
    policy_host = lab.https.get(STS_HOST)
    assert policy_host is not None
    assert shown["sts"]["policy"] == policy_host.body
    missing = cache_cli(server, "show", "nxdomain.lab")
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[-1] == "nxdomain.lab: not cached"
    assert f"configuration file {server.config_path} (-c)" in missing.stderr

    # export: Postfix texthash lines, only for domains with a policy
    exported = cache_cli(server, "export")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.splitlines() == ["dane-only.lab dane-only", f"sts-good.lab {STS_GOOD}"]
    table = tmp_path / "tls_policy"
    table.write_text(exported.stdout)
    assert postmap_query("sts-good.lab", f"texthash:{table}").value == STS_GOOD
    assert postmap_query("dane-only.lab", f"texthash:{table}").value == "dane-only"
    assert postmap_query("plain.lab", f"texthash:{table}").kind is PostmapKind.NOTFOUND

    # purge DOMAIN: the server forgets it (within hot_ttl) and looks it up again
    purged = cache_cli(server, "purge", "sts-good.lab")
    assert (purged.returncode, purged.stdout) == (0, "sts-good.lab: removed\n")
    fetches = lab.https.count(STS_HOST)
    again = dns.mark()
    wait_until(
        lambda: (
            server.request("sts-good.lab") == "OK " + STS_GOOD
            and live_answers(server, "sts-good.lab") == 2
        ),
        timeout=COUNT_TIMEOUT_S,
        what="a lookup of the purged domain",
    )
    assert lab.https.count(STS_HOST) == fetches + 1
    assert dns.count(again, "sts-good.lab", "MX") == 1
    assert live_answers(server, "dane-only.lab") == 1  # the others stay cached

    # warm FILE: resolved ahead of first contact, so the server needs no lookup
    names = tmp_path / "domains.txt"
    names.write_text(WARM_FILE)
    warmed = cache_cli(server, "warm", str(names))
    assert warmed.returncode == 0, warmed.stderr
    assert sorted(warmed.stdout.splitlines()) == [f"{d}: {r}" for d, r in sorted(WARMED.items())]
    wild_fetches = lab.https.count("mta-sts.sts-wild.lab")
    assert wild_fetches == 1
    mark = dns.mark()
    for domain, reply in WARMED.items():
        assert server.request(domain) == reply, domain
    assert server.postmap("sts-wild.lab").value == STS_WILD
    time.sleep(SETTLE_S)
    assert dns.since(mark) == []
    assert lab.https.count("mta-sts.sts-wild.lab") == wild_fetches
    assert all(live_answers(server, domain) == 0 for domain in WARMED)

    # purge: everything
    everything = cache_cli(server, "purge")
    assert (everything.returncode, everything.stdout) == (0, "removed 6 entries\n")
    assert json.loads(cache_cli(server, "list", "--json").stdout) == []

    assert_explained(server, "sts-wild.lab")
    assert_explained(server, "dane-mixed.lab")
