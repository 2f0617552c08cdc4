"""``tlspolicy query`` and the server agree: what the CLI says the server answers from its
cache is what the server answers, for every lab domain, under every profile and both
``mta_sts.dns_failure`` settings (both act on ``plan.plan_answer``)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import ServerProcess, tlspolicy_command
from tests.lab.scenario import LONG_LABEL_DOMAIN, Lab
from tlspolicy.cli.explain import cached_view
from tlspolicy.config import load_config

pytestmark = pytest.mark.integration

# Every lab domain the server decides within a request (the 30-second slow policy hosts are
# left out: they only time out).
DOMAINS = (
    "dane-only.lab",
    "dane-mixed.lab",
    "smart.unsigned.lab",
    "plain.unsigned.lab",
    "insecure-tlsa.unsigned.lab",
    "plain.lab",
    "unusable.lab",
    "usage01.lab",
    "malformed-tlsa.lab",
    "cname-mx.lab",
    "nullmx.lab",
    "implicit.lab",
    "nxdomain.lab",
    "bogus.lab",
    "badtlsa.lab",
    "both.lab",
    "sts.unsigned.lab",
    "cname-insecure.lab",
    "sts-good.lab",
    "sts-wild.lab",
    "sts-cname.lab",
    "sts-twotxt.lab",
    "sts-badtxt.lab",
    "sts-404.lab",
    "sts-redirect.lab",
    "sts-ctype.lab",
    "sts-charset.lab",
    "sts-untrusted.lab",
    "sts-wrongname.lab",
    "sts-expired.lab",
    "sts-big.lab",
    "sts-bigchunk.lab",
    "sts-change.lab",
    "sts-testing.lab",
    "sts-none.lab",
    "sts-lf.lab",
    "sts-badpolicy.lab",
    "sts-nohost.lab",
    "sts-tlsrpt.lab",
    "sts-bogustxt.lab",
    LONG_LABEL_DOMAIN,
)
MAPS = {"QUERY": {}, "QUERYwithTLSRPT": {"tlsrpt": True}, "STRICT": {"strict_testing": True}}


@pytest.mark.parametrize("dns_failure", ["notfound", "temp"])
def test_query_and_server_agree_on_every_lab_domain(
    start_server: Any, lab: Lab, tmp_path: Path, dns_failure: str
) -> None:
    server: ServerProcess = start_server(
        maps=MAPS,
        mta_sts={"dns_failure": dns_failure},
        cache={"backend": "sqlite", "path": str(tmp_path / "cache.sqlite3"), "hot_ttl": 0.2},
    )
    config = load_config(str(server.config_path))
    for domain in DOMAINS:
        for name in MAPS:
            server.request(domain, name)  # fills the cache (live, or from cache)
    disagreements = []
    for domain in DOMAINS:
        for name in MAPS:
            said = asyncio.run(cached_view(config, name, domain))
            answered = server.request(domain, name)
            if said.get("looks_up") or said.get("entry") is None:
                # Only TEMP results are not cached: the server looks up again, live.
                assert answered.startswith("TEMP "), (domain, name, said, answered)
                continue
            if said.get("reply") != answered:
                disagreements.append((domain, name, said.get("reply"), answered))
    assert disagreements == []
    if dns_failure == "temp":  # the case the old CLI copy got wrong
        said = asyncio.run(cached_view(config, "QUERY", "sts-bogustxt.lab"))
        assert said["reply"].startswith("TEMP MTA-STS lookup failed")
        assert server.request("sts-bogustxt.lab").startswith("TEMP MTA-STS lookup failed")
    else:
        assert server.request("sts-bogustxt.lab") == "NOTFOUND "


def test_query_command_shows_the_servers_cached_answer(start_server: Any, tmp_path: Path) -> None:
    server: ServerProcess = start_server(
        mta_sts={"dns_failure": "temp"},
        cache={"backend": "sqlite", "path": str(tmp_path / "cache.sqlite3")},
    )
    for domain in ("sts-bogustxt.lab", "sts-good.lab", "dane-only.lab"):
        server.request(domain)
        run = subprocess.run(
            tlspolicy_command("query", "-c", str(server.config_path), "--json", domain),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        out = json.loads(run.stdout)
        answered = server.request(domain)
        if domain == "sts-bogustxt.lab":
            # A failed TXT lookup is believed only briefly, and the resolver's error text
            # (its EDE) may differ between lookups: compare the verdict and its cause.
            for reply in (out["cache"]["reply"], answered, out["reply"]):
                assert reply.startswith("TEMP MTA-STS lookup failed: TXT lookup failed"), out
        else:
            assert out["cache"]["reply"] == answered, out
            assert out["reply"] == answered  # the live lookup agrees here
