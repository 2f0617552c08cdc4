"""Issue 14 end to end: operator control through the real server and ``postmap -q``.

Overrides added with ``tlspolicy override add`` on one MTA reach a second MTA sharing the
Redis/PostgreSQL cache and expire by themselves; shadow maps answer ``NOTFOUND `` while the
metrics count what they would have enforced; a cached MTA-STS policy that stops covering
the domain's MX raises the drift warning; ``tlspolicy cache warm --from-maillog`` resolves
the recipient domains of a generated Postfix log.
"""

from __future__ import annotations

import functools
import gzip
import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cachetools import STS_GOOD, STS_WILD, cache_section, live_answers
from tests.integration.server import ServerProcess, tlspolicy_command
from tests.lab.netutil import free_port, wait_until
from tests.lab.postfix import PostmapKind
from tests.lab.scenario import Lab

pytestmark = pytest.mark.integration

SHARED = [
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
PROPAGATION_TIMEOUT_S = 10.0  # hot_ttl 1 s: one re-read of the store, plus a memo
REASON = "partner certificate expired, ticket 4711"
DRIFT_WARNING = (
    "WARNING tlspolicy.service: sts-good.lab: policy drift: MTA-STS enforce policy "
    "(mx mx1.sts-good.lab, mx2.sts-good.lab) does not cover MX mx1.sts-wild.lab"
)


def cli(
    server: ServerProcess, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``tlspolicy ARGS -c <the server's configuration>``."""
    command, *rest = args
    return subprocess.run(
        tlspolicy_command(command, "-c", str(server.config_path), *rest),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        input=stdin,
    )


def answers(server: ServerProcess, domain: str, value: str) -> bool:
    return server.postmap(domain).value == value


def http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        text: str = response.read().decode()
    return text


@pytest.fixture(params=SHARED)
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    return {**cache_section(request.param, request, tmp_path), "hot_ttl": 1}


def test_operator_e2e_override_on_one_mta_changes_the_second_and_expires(
    start_server: Any, lab: Lab, shared: dict[str, Any]
) -> None:
    port = free_port(udp=False)
    first = start_server(cache=shared)
    second = start_server(cache=shared, server={"metrics_listen": f"127.0.0.1:{port}"})
    assert second.postmap("sts-good.lab").value == STS_GOOD
    # Long enough that no check of the active override can race its expiry on a busy
    # machine (each CLI call is a new process); the expiry is tested with a short one below.
    added = cli(
        first, "override", "add", "sts-good.lab", "may", "--until", "10m", "--reason", REASON
    )
    assert added.returncode == 0, added.stderr
    assert "weakens sts-good.lab's MTA-STS enforce" in added.stderr  # the cache knows it

    # Each server re-reads the store every hot_ttl, on its own schedule.
    for server in (second, first):
        wait_until(
            functools.partial(answers, server, "sts-good.lab", "may"),
            timeout=PROPAGATION_TIMEOUT_S,
            what="the override on both MTAs",
        )
    assert second.postmap("mx1.sts-good.lab").kind.name == "NOTFOUND"  # no --subdomains
    listed = json.loads(cli(second, "override", "list", "--json").stdout)
    assert [(o["domain"], o["answer"], o["state"]) for o in listed] == [
        ("sts-good.lab", "OK may", "active")
    ]
    query = json.loads(cli(second, "query", "sts-good.lab", "--json").stdout)
    assert query["reply"] == "OK may"
    assert query["override"]["reason"] == REASON
    assert query["override"]["state"] == "active"
    assert REASON in query["reason"] and "override until" in query["reason"]
    assert "OK may (override until" in cli(second, "cache", "list").stdout
    log = second.log()
    assert f"sts-good.lab: may by override (reason: {REASON}; until" in log
    assert "WARNING tlspolicy.service: sts-good.lab: override may weakens MTA-STS enforce" in log
    health = json.loads(http_text(f"http://127.0.0.1:{port}/healthz?format=json"))
    assert health["ok"] is True
    assert [(o["domain"], o["weakens"], o["reason"]) for o in health["weakening_overrides"]] == [
        ("sts-good.lab", "MTA-STS enforce", REASON)
    ]
    assert 'tlspolicy_override_answers_total{state="active"}' in http_text(
        f"http://127.0.0.1:{port}/metrics"
    )

    # It expires by itself: both MTAs look up again, and say so once.
    shortened = cli(
        first, "override", "add", "sts-good.lab", "may", "--until", "2s", "--reason", REASON
    )
    assert shortened.returncode == 0, shortened.stderr
    wait_until(
        lambda: second.postmap("sts-good.lab").value == STS_GOOD,
        timeout=PROPAGATION_TIMEOUT_S + 2,
        what="the override to expire",
    )
    assert first.postmap("sts-good.lab").value == STS_GOOD
    for _ in range(3):
        assert second.request("sts-good.lab") == "OK " + STS_GOOD
    assert second.log().count("sts-good.lab: override may expired at") == 1
    health = json.loads(http_text(f"http://127.0.0.1:{port}/healthz?format=json"))
    assert health["weakening_overrides"] == []
    listed = json.loads(cli(first, "override", "list", "--json").stdout)
    assert [o["state"] for o in listed] == ["expired"]
    removed = cli(first, "override", "remove", "sts-good.lab")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(cli(first, "override", "list", "--json").stdout) == []


def test_operator_e2e_shadow_map_answers_notfound_while_metrics_show_enforcement(
    start_server: Any, lab: Lab, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    port = free_port(udp=False)
    server = start_server(
        server={"metrics_listen": f"127.0.0.1:{port}"},
        cache=cache_section("sqlite", request, tmp_path),
        maps={"QUERY": {"shadow": True}, "ENFORCE": {}},
    )
    for domain in ("dane-only.lab", "sts-good.lab", "dane-only.lab"):
        result = server.postmap(domain)
        assert result.kind is PostmapKind.NOTFOUND, (domain, result)
    assert server.postmap("dane-only.lab", "ENFORCE").value == "dane-only"  # same decisions
    text = http_text(f"http://127.0.0.1:{port}/metrics")
    assert 'tlspolicy_shadow_answers_total{answer="dane-only"} 2.0' in text
    assert 'tlspolicy_shadow_answers_total{answer="secure"} 1.0' in text
    assert 'tlspolicy_queries_total{answer="notfound",map="QUERY"} 3.0' in text
    assert "shadow QUERY sts-good.lab: would answer OK " + STS_GOOD in server.log()
    listed = cli(server, "cache", "list").stdout
    assert "NOTFOUND (shadow; enforces: OK dane-only)" in listed
    assert f"NOTFOUND (shadow; enforces: OK {STS_GOOD})" in listed
    assert "OK dane-only" in cli(server, "cache", "list", "--map", "ENFORCE").stdout
    query = json.loads(cli(server, "query", "dane-only.lab", "--json").stdout)
    assert query["profile"]["shadow"]
    assert (query["reply"], query["shadow_reply"]) == ("NOTFOUND ", "OK dane-only")


def test_operator_e2e_policy_that_stops_covering_the_mx_raises_drift(
    start_server: Any, fresh_lab: Lab, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    port = free_port(udp=False)
    server = start_server(
        server={"metrics_listen": f"127.0.0.1:{port}"},
        cache=cache_section("sqlite", request, tmp_path),
        dane={"min_ttl": 1, "max_ttl": 1},  # the MX is looked up again after a second
    )
    assert server.postmap("sts-good.lab").value == STS_GOOD
    assert cli(server, "cache", "show", "sts-good.lab").returncode == 0
    # The MX moves to a host the (still valid, cached) policy does not name.
    fresh_lab.dns.set_records("sts-good.lab", "MX", ["10 mx1.sts-good.lab", "20 mx1.sts-wild.lab"])
    fresh_lab.dns.apply()

    def warned() -> bool:
        assert server.postmap("sts-good.lab").value == STS_GOOD  # the policy still applies
        return DRIFT_WARNING in server.log()

    wait_until(warned, timeout=PROPAGATION_TIMEOUT_S, what="the drift warning")
    shown = json.loads(cli(server, "cache", "show", "sts-good.lab").stdout)
    assert shown["drift"]["kind"] == "mta_sts"
    assert shown["drift"]["hosts"] == ["mx1.sts-wild.lab"]
    assert "[drift: MTA-STS enforce policy" in cli(server, "cache", "list").stdout
    # Once per change: more lookups of the same MX say nothing new. They are counted in
    # the metrics, not as live answers in the log: while queries keep coming, refresh-ahead
    # re-looks the domain up in the background before its 1 s DANE result expires.
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    lookups = dane_lookups(http_text(metrics_url))

    def looked_up_again() -> bool:
        assert server.postmap("sts-good.lab").value == STS_GOOD
        return dane_lookups(http_text(metrics_url)) >= lookups + 2

    wait_until(looked_up_again, timeout=PROPAGATION_TIMEOUT_S, what="two more MX lookups")
    assert server.log().count(DRIFT_WARNING) == 1
    metrics = http_text(metrics_url)
    assert 'tlspolicy_policy_drift_total{kind="mta_sts"} 1.0' in metrics


def dane_lookups(metrics: str) -> float:
    """DANE lookups done so far, live or refresh-ahead (the lookup-duration histogram)."""
    prefix = 'tlspolicy_lookup_duration_seconds_count{branch="dane"} '
    lines = [line for line in metrics.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, metrics
    return float(lines[0].removeprefix(prefix))


def postfix_log(entries: list[tuple[str, str, str]]) -> str:
    """Postfix delivery log lines: (process, recipient, status) each, syslog format."""
    lines = []
    for number, (process, recipient, status) in enumerate(entries):
        domain = recipient.rpartition("@")[2]
        lines.append(
            f"Dec  2 01:{number // 60:02d}:{number % 60:02d} mx "
            f"postfix/{process}[{1000 + number}]: 4F{number:04X}: to=<{recipient}>, "
            f"relay=mx.{domain}[192.0.2.{number % 250}]:25, "
            f"delay=0.5, delays=0.1/0/0.2/0.2, dsn=2.0.0, status={status} (250 2.0.0 Ok)"
        )
        lines.append(f"Dec  2 01:00:00 mx postfix/qmgr[99]: 4F{number:04X}: removed")
    return "\n".join(lines) + "\n"


def test_operator_e2e_warm_from_maillog_resolves_recent_recipient_domains(
    start_server: Any, lab: Lab, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = start_server(cache=cache_section("sqlite", request, tmp_path))
    plain = tmp_path / "mail.log"
    plain.write_text(
        postfix_log(
            [
                ("smtp", "alice@sts-good.lab", "sent"),
                ("smtp", "bob@dane-only.lab", "deferred"),
                ("smtp", "carol@dane-mixed.lab", "bounced"),  # not a delivery to warm
                ("local", "root@plain.lab", "sent"),  # not an SMTP delivery
            ]
        )
    )
    rotated = tmp_path / "mail.log.1.gz"
    rotated.write_bytes(
        gzip.compress(postfix_log([("smtp", "dave@STS-wild.lab", "sent")]).encode())
    )
    piped = postfix_log([("smtp", "erin@plain.lab", "sent"), ("smtp", "x@sts-good.lab", "sent")])

    warmed = cli(
        server, "cache", "warm", "--from-maillog", str(plain), str(rotated), "-", stdin=piped
    )
    assert warmed.returncode == 0, warmed.stderr
    assert sorted(warmed.stdout.splitlines()) == [
        "dane-only.lab: OK dane-only",
        "plain.lab: NOTFOUND ",
        "sts-good.lab: OK " + STS_GOOD,
        f"sts-wild.lab: OK {STS_WILD}",
    ]
    assert warmed.stderr.splitlines()[-1] == (
        "warmed: 4 resolved (1 DANE, 2 MTA-STS, 1 no policy), 0 failed"
    )
    # Ahead of first contact: the server answers all of them from the cache.
    assert server.postmap("sts-good.lab").value == STS_GOOD
    assert server.postmap("dane-only.lab").value == "dane-only"
    assert server.postmap("sts-wild.lab").value == STS_WILD
    assert server.postmap("plain.lab").kind is PostmapKind.NOTFOUND
    for domain in ("sts-good.lab", "dane-only.lab", "sts-wild.lab", "plain.lab"):
        assert live_answers(server, domain) == 0, domain
    assert server.postmap("dane-mixed.lab").kind is not PostmapKind.TEMP
    assert live_answers(server, "dane-mixed.lab") == 1  # the bounce was not warmed

    # The list form reports the same summary.
    names = tmp_path / "domains.txt"
    names.write_text("dane-only.lab\nnxdomain.lab  # comment\n")
    listed = cli(server, "cache", "warm", str(names))
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.splitlines()[-1] == (
        "warmed: 2 resolved (1 DANE, 0 MTA-STS, 1 no policy), 0 failed"
    )


def test_operator_e2e_dane_only_domain_whose_mx_turns_insecure_raises_drift(
    start_server: Any, fresh_lab: Lab, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = start_server(
        cache=cache_section("sqlite", request, tmp_path), dane={"min_ttl": 1, "max_ttl": 1}
    )
    assert server.postmap("dane-only.lab").value == "dane-only"
    staged = fresh_lab.dns.get("dane-only.lab", "MX")
    assert staged is not None
    # The domain moves to a provider's unsigned zone: its MX RRset is no longer secure.
    fresh_lab.dns.delete_records("dane-only.lab")
    fresh_lab.dns.set_records("dane-only.lab", "CNAME", ["moved.unsigned.lab."])
    fresh_lab.dns.set_records("moved.unsigned.lab", "MX", staged[1])
    fresh_lab.dns.apply()

    def warned() -> bool:
        assert server.postmap("dane-only.lab").kind is not PostmapKind.TEMP
        return "dane-only.lab: policy drift: MX RRset no longer DNSSEC-secure" in server.log()

    wait_until(warned, timeout=PROPAGATION_TIMEOUT_S, what="the DANE drift warning")
    assert server.postmap("dane-only.lab").value != "dane-only"
    assert server.log().count("policy drift: MX RRset no longer DNSSEC-secure") == 1
