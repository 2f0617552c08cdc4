"""Issue 4 end to end: DANE discovery and the DANE-first decision through the running server.

Every catalogue case is checked three ways: the exact reply payload over a raw socketmap
connection (for both map profiles), Postfix's own ``postmap -q``, and ``tlspolicy query
--json``, which must say why (verdict, reason, per-host findings) and list each DNS lookup
with its DNSSEC status and TTL. Cases that change DNS or policy hosts start their own server.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.cachetools import SETTLE_S, DnsLog
from tests.integration.server import ServerProcess
from tests.lab.https import Behavior
from tests.lab.postfix import PostmapKind
from tests.lab.scenario import LONG_LABEL_DOMAIN, LONGEST_DOMAIN, Lab, sts_policy

pytestmark = pytest.mark.integration

# `tlspolicy query` exit statuses (docs/operations.md "Commands", man tlspolicy).
EXIT_FOUND, EXIT_NOTFOUND, EXIT_TEMP = 0, 1, 75
# Answers that need no network wait come back within this (one loopback DNS round per step).
FAST_ANSWER_S = 1.0
# Slack on top of a configured timeout or TTL: process scheduling on a shared 2-core box.
TIMING_MARGIN_S = 0.5
POLL_S = 0.05
# Unbound reports a validation failure as EDE 9 while it builds the chain and as EDE 6
# when it answers from its bogus cache; which one a test sees depends on earlier queries.
BOGUS_EDE = r"\(EDE (?:6 DNSSEC Bogus|9 DNSKEY Missing)\)"
STS_UNSIGNED = "secure match=mx1.sts.unsigned.lab:mx2.sts.unsigned.lab servername=hostname"


@dataclass(frozen=True)
class Case:
    """One catalogue domain: what the server says and what ``tlspolicy query`` shows.

    ``reply`` is the exact payload, or a ``re.Pattern`` for TEMP replies that quote the
    resolver. ``lookups`` are (name, rdtype, status) triples that must appear; ``hosts``
    are (host, address_status, tlsa_name, tlsa_status, usable, unusable) per MX host.
    """

    key: str
    reply: str | re.Pattern[str]
    verdict: str
    reason: str
    dane: str  # SAME: as ``verdict`` (DANE decided)
    dane_reason: str  # SAME: as ``reason``
    mx_secure: bool | None
    lookups: tuple[tuple[str, str, str], ...]
    hosts: tuple[tuple[str, str, str, str, int, int], ...] = ()
    absent: tuple[tuple[str, str], ...] = ()  # (name, rdtype) that must not be asked


SAME = ""  # a DANE level or reason that is the verdict's, written once


def secure_host(name: str, usable: int, unusable: int = 0) -> tuple[str, str, str, str, int, int]:
    return (name, "secure", f"_25._tcp.{name}", "secure", usable, unusable)


CASES = [
    Case(
        "dane-only.lab",
        "OK dane-only",
        "dane-only",
        "usable TLSA at all 2 MX hosts",
        SAME,
        SAME,
        True,
        (
            ("dane-only.lab", "MX", "secure"),
            ("mx1.dane-only.lab", "A", "secure"),
            ("_25._tcp.mx1.dane-only.lab", "TLSA", "secure"),
            ("_25._tcp.mx2.dane-only.lab", "TLSA", "secure"),
        ),
        (secure_host("mx1.dane-only.lab", 2), secure_host("mx2.dane-only.lab", 2)),
    ),
    Case(
        "dane-mixed.lab",
        "OK dane",
        "dane",
        "secure TLSA at 1 of 2 MX hosts, 1 usable",
        SAME,
        SAME,
        True,
        (
            ("_25._tcp.mx1.dane-mixed.lab", "TLSA", "secure"),
            ("_25._tcp.mx2.dane-mixed.lab", "TLSA", "secure"),
        ),
        (
            secure_host("mx1.dane-mixed.lab", 1),
            ("mx2.dane-mixed.lab", "secure", "_25._tcp.mx2.dane-mixed.lab", "none", 0, 0),
        ),
    ),
    Case(
        "smart.unsigned.lab",
        "OK dane",
        "dane",
        "secure TLSA at 1 of 1 MX hosts, 1 usable; MX RRset not signed",
        SAME,
        SAME,
        False,
        (
            ("smart.unsigned.lab", "MX", "insecure"),
            ("mx.smart-target.lab", "A", "secure"),
            ("_25._tcp.mx.smart-target.lab", "TLSA", "secure"),
        ),
        (secure_host("mx.smart-target.lab", 1),),
    ),
    Case(
        "plain.unsigned.lab",
        "NOTFOUND ",
        "notfound",
        "no MTA-STS record",
        "none",
        "no MX host in a signed zone; MX RRset not signed",
        False,
        (("plain.unsigned.lab", "MX", "insecure"),),
        (("mx1.plain.unsigned.lab", "insecure", "", "", 0, 0),),
        # A host in the domain's own unsigned zone: neither address nor TLSA is asked.
        absent=(("_25._tcp.mx1.plain.unsigned.lab", "TLSA"), ("mx1.plain.unsigned.lab", "A")),
    ),
    Case(
        "unusable.lab",
        "OK dane",
        "dane",
        "secure TLSA at 1 of 1 MX hosts, 0 usable",
        SAME,
        SAME,
        True,
        (("_25._tcp.mx1.unusable.lab", "TLSA", "secure"),),
        (secure_host("mx1.unusable.lab", 0, 3),),
    ),
    Case(
        "usage01.lab",
        "OK dane",
        "dane",
        "secure TLSA at 1 of 1 MX hosts, 0 usable",
        SAME,
        SAME,
        True,
        (("_25._tcp.mx1.usage01.lab", "TLSA", "secure"),),
        (secure_host("mx1.usage01.lab", 0, 2),),
    ),
    Case(
        "malformed-tlsa.lab",
        "OK dane",
        "dane",
        "secure TLSA at 1 of 1 MX hosts, 0 usable",
        SAME,
        SAME,
        True,
        (("_25._tcp.mx1.malformed-tlsa.lab", "TLSA", "secure"),),
        (secure_host("mx1.malformed-tlsa.lab", 0, 2),),
    ),
    Case(
        "cname-mx.lab",
        "OK dane-only",
        "dane-only",
        "usable TLSA at all 1 MX hosts",
        SAME,
        SAME,
        True,
        (("mx.cname-mx.lab", "A", "secure"), ("_25._tcp.mail.provider.lab", "TLSA", "secure")),
        (("mx.cname-mx.lab", "secure", "_25._tcp.mail.provider.lab", "secure", 1, 0),),
        absent=(("_25._tcp.mx.cname-mx.lab", "TLSA"),),
    ),
    Case(
        "nullmx.lab",
        "NOTFOUND ",
        "notfound",
        "no MTA-STS record",
        "none",
        "null MX (domain accepts no mail)",
        True,
        (("nullmx.lab", "MX", "secure"),),
        absent=(("nullmx.lab", "A"), ("_25._tcp.nullmx.lab", "TLSA")),
    ),
    Case(
        "implicit.lab",
        "OK dane-only",
        "dane-only",
        "usable TLSA at all 1 MX hosts (implicit MX)",
        SAME,
        SAME,
        True,
        (("implicit.lab", "MX", "secure"), ("_25._tcp.implicit.lab", "TLSA", "secure")),
        (secure_host("implicit.lab", 1),),
    ),
    Case(
        "nxdomain.lab",
        "NOTFOUND ",
        "notfound",
        "no MTA-STS record",
        "none",
        "domain does not exist (NXDOMAIN)",
        True,
        (("nxdomain.lab", "MX", "secure"),),
        absent=(("nxdomain.lab", "A"),),
    ),
    Case(
        "bogus.lab",
        re.compile(r"TEMP MX lookup failed: servfail " + BOGUS_EDE),
        "temp",
        "",
        SAME,
        SAME,
        None,
        (("bogus.lab", "MX", "error"),),
    ),
    Case(
        "badtlsa.lab",
        "TEMP TLSA lookup failed for mx.tlsabogus.lab: servfail (EDE 6 DNSSEC Bogus)",
        "temp",
        "TLSA lookup failed for mx.tlsabogus.lab: servfail (EDE 6 DNSSEC Bogus)",
        SAME,
        SAME,
        True,
        (
            ("_25._tcp.mx1.badtlsa.lab", "TLSA", "secure"),
            ("_25._tcp.mx.tlsabogus.lab", "TLSA", "error"),
        ),
    ),
    Case(
        "both.lab",
        "OK dane-only",
        "dane-only",
        "usable TLSA at all 2 MX hosts",
        SAME,
        SAME,
        True,
        (("_25._tcp.mx1.both.lab", "TLSA", "secure"), ("_25._tcp.mx2.both.lab", "TLSA", "secure")),
        (secure_host("mx1.both.lab", 1), secure_host("mx2.both.lab", 1)),
    ),
    Case(
        "sts.unsigned.lab",
        "OK " + STS_UNSIGNED,
        "secure",
        "MTA-STS policy mode enforce",
        "none",
        "no MX host in a signed zone; MX RRset not signed",
        False,
        (
            ("sts.unsigned.lab", "MX", "insecure"),
            ("_mta-sts.sts.unsigned.lab", "TXT", "insecure"),
        ),
        absent=(("_25._tcp.mx1.sts.unsigned.lab", "TLSA"), ("mx1.sts.unsigned.lab", "A")),
    ),
    Case(
        # RFC 7672 §2.2.2: a secure CNAME to an unsigned target; TLSA at the initial name.
        "cname-insecure.lab",
        "OK dane-only",
        "dane-only",
        "usable TLSA at all 1 MX hosts",
        "dane-only",
        "usable TLSA at all 1 MX hosts",
        True,
        (
            ("mx.cname-insecure.lab", "A", "insecure"),
            ("mx.cname-insecure.lab", "CNAME", "secure"),
            ("_25._tcp.mx.cname-insecure.lab", "TLSA", "secure"),
        ),
        (
            (
                "mx.cname-insecure.lab",
                "insecure",
                "_25._tcp.mx.cname-insecure.lab",
                "secure",
                1,
                0,
            ),
        ),
        absent=(("_25._tcp.mx.cname-insecure.unsigned.lab", "TLSA"),),
    ),
    Case(
        LONG_LABEL_DOMAIN,
        "OK dane-only",
        "dane-only",
        "usable TLSA at all 1 MX hosts",
        SAME,
        SAME,
        True,
        ((f"_25._tcp.mx1.{LONG_LABEL_DOMAIN}", "TLSA", "secure"),),
        (secure_host(f"mx1.{LONG_LABEL_DOMAIN}", 1),),
    ),
    Case(
        # _25._tcp.<d> and _mta-sts.<d> exceed 255 octets: they cannot exist, so "no TLSA"
        # and "no STS record", never a lookup failure.
        LONGEST_DOMAIN,
        "NOTFOUND ",
        "notfound",
        "no MTA-STS record",
        "none",
        "no MX host has secure TLSA (implicit MX)",
        True,
        (
            (LONGEST_DOMAIN, "MX", "secure"),
            (LONGEST_DOMAIN, "A", "secure"),
            (f"_25._tcp.{LONGEST_DOMAIN}", "TLSA", "secure"),
            (f"_mta-sts.{LONGEST_DOMAIN}", "TXT", "secure"),
        ),
        ((LONGEST_DOMAIN, "secure", f"_25._tcp.{LONGEST_DOMAIN}", "none", 0, 0),),
    ),
]


@pytest.fixture(scope="module")
def dane_server(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the catalogue cases: they only read the documented data."""
    server = ServerProcess(lab, tmp_path_factory.mktemp("dane-server"))
    yield server
    server.stop()


def explain(server: ServerProcess, key: str) -> tuple[int, dict[str, Any]]:
    """``tlspolicy query KEY --json``: (exit status, parsed output)."""
    done = server.cli_query(key, "--json")
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def dns_lookups(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in data["lookups"] if e["kind"] == "dns"]


def assert_every_lookup_shows_status_and_ttl(data: dict[str, Any]) -> None:
    lookups = dns_lookups(data)
    assert lookups
    for event in lookups:
        assert event["status"] in ("secure", "insecure", "error"), event
        if event["status"] == "error":
            assert event["data"], event  # the failure kind, e.g. ["servfail", "EDE 6 ..."]
        else:
            assert isinstance(event["ttl"], int) and event["ttl"] >= 0, event


def lookup_status(data: dict[str, Any], name: str, rdtype: str) -> str:
    found = [e for e in dns_lookups(data) if (e["name"], e["detail"]) == (name, rdtype)]
    assert found, f"no {rdtype} lookup for {name}: {dns_lookups(data)}"
    return str(found[0]["status"])


def reply_matches(reply: str, expected: str | re.Pattern[str]) -> bool:
    if isinstance(expected, str):
        return reply == expected
    return expected.fullmatch(reply) is not None


def expected_exit(verdict: str) -> int:
    return {"temp": EXIT_TEMP, "notfound": EXIT_NOTFOUND}.get(verdict, EXIT_FOUND)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.key[:40]) for c in CASES])
def test_dane_e2e_catalogue(dane_server: ServerProcess, case: Case) -> None:
    started = time.monotonic()
    reply = dane_server.request(case.key)
    elapsed = time.monotonic() - started
    assert reply_matches(reply, case.reply), reply
    assert elapsed < FAST_ANSWER_S, f"{case.key} took {elapsed:.2f} s"

    # DANE answers and failures carry no STS (TLSRPT) attributes: Postfix reports DANE itself.
    tlsrpt = dane_server.request(case.key, "QUERYwithTLSRPT")
    if case.verdict == "secure":
        assert tlsrpt.startswith(f"{reply} policy_type=sts policy_domain={case.key} "), tlsrpt
    else:
        assert reply_matches(tlsrpt, case.reply), tlsrpt

    result = dane_server.postmap(case.key)
    if reply.startswith("OK "):
        assert (result.kind, result.value) == (PostmapKind.FOUND, reply[3:]), result
    elif reply.startswith("TEMP "):
        assert result.kind is PostmapKind.TEMP, result
        # The reason reaches Postfix's log (this is a new lookup: the EDE code may differ).
        expected = re.sub(r"\(EDE \d+ [^)]*\)", "(EDE", reply[5:]).split("(EDE")[0]
        assert expected in result.stderr, result
    else:
        assert result.kind is PostmapKind.NOTFOUND, result

    code, data = explain(dane_server, case.key)
    assert code == expected_exit(case.verdict), data
    assert reply_matches(data["reply"], case.reply), data["reply"]
    assert data["verdict"] == case.verdict
    dane = data["dane"]
    assert dane["level"] == (case.dane or case.verdict)
    if case.reason:
        assert data["reason"] == case.reason
        assert dane["reason"] == (case.dane_reason or case.reason)
    else:
        assert reply_matches("TEMP " + data["reason"], case.reply)
    if case.mx_secure is not None:
        assert dane["mx_secure"] is case.mx_secure
    hosts = [
        (
            h["host"],
            h["address_status"],
            h["tlsa_name"],
            h["tlsa_status"],
            h["usable"],
            h["unusable"],
        )
        for h in dane["hosts"]
    ]
    if case.hosts:
        assert hosts == list(case.hosts)
    assert_every_lookup_shows_status_and_ttl(data)
    for name, rdtype, status in case.lookups:
        assert lookup_status(data, name, rdtype) == status, (name, rdtype)
    asked = {(e["name"], e["detail"]) for e in dns_lookups(data)}
    for name, rdtype in case.absent:
        assert (name, rdtype) not in asked, (name, rdtype)


def test_dane_e2e_temp_reason_is_short_and_names_the_failure(dane_server: ServerProcess) -> None:
    for key in ("bogus.lab", "badtlsa.lab"):
        reply = dane_server.request(key)
        assert reply.startswith("TEMP ") and len(reply) <= 100, reply
        assert "\n" not in reply and "validation failure" not in reply, reply


def test_dane_e2e_resolver_timeout_is_temp_within_the_timeout(
    start_server: Callable[..., ServerProcess], lab: Lab
) -> None:
    host, port = lab.blackhole
    timeout = 1.0
    server = start_server(
        dns={"nameservers": [f"{host}:{port}"], "timeout": timeout, "selfcheck": False}
    )
    started = time.monotonic()
    reply = server.request("dane-only.lab")
    elapsed = time.monotonic() - started
    pattern = (
        rf"TEMP MX lookup failed: timeout \(no answer from {host}:{port} within [01]\.\d\d s\)"
    )
    assert re.fullmatch(pattern, reply), reply
    assert timeout - 0.05 <= elapsed <= timeout + TIMING_MARGIN_S, f"TEMP after {elapsed:.2f} s"

    result = server.postmap("dane-only.lab")
    assert result.kind is PostmapKind.TEMP, result
    code, data = explain(server, "dane-only.lab")
    assert (code, data["verdict"], data["dane"]["level"]) == (EXIT_TEMP, "temp", "temp")
    assert lookup_status(data, "dane-only.lab", "MX") == "error"
    mx = next(e for e in dns_lookups(data) if e["detail"] == "MX")
    assert mx["data"][0] == "timeout"
    assert_every_lookup_shows_status_and_ttl(data)


def test_dane_e2e_answer_neither_waits_for_nor_starts_the_sts_fetch(
    start_server: Callable[..., ServerProcess], fresh_lab: Lab
) -> None:
    # DANE first (RFC 8461 §2): a domain with DANE and MTA-STS is answered from DANE alone,
    # and its MTA-STS policy (here a slow one) is neither awaited nor fetched.
    policy_host = "mta-sts.both.lab"
    body = sts_policy("enforce", ["mx1.both.lab", "mx2.both.lab"])
    fresh_lab.https.set(policy_host, Behavior(body=body, head_delay=5.0))
    dns = DnsLog.enabled(fresh_lab)
    mark = dns.mark()
    server = start_server()
    started = time.monotonic()
    reply = server.request("both.lab", "QUERYwithTLSRPT")
    elapsed = time.monotonic() - started
    assert reply == "OK dane-only"
    assert elapsed < FAST_ANSWER_S, f"DANE answer took {elapsed:.2f} s"
    assert server.postmap("both.lab").value == "dane-only"
    time.sleep(SETTLE_S)
    assert fresh_lab.https.count(policy_host) == 0
    assert dns.count(mark, "both.lab", "MX") == 1
    assert dns.count(mark, "_mta-sts.both.lab", "TXT") == 0


def test_dane_e2e_fresh_dane_overrides_cached_sts(
    start_server: Callable[..., ServerProcess], fresh_lab: Lab
) -> None:
    max_ttl = 2
    server = start_server(dane={"min_ttl": 1, "max_ttl": max_ttl})
    sts_good = "OK secure match=mx1.sts-good.lab:mx2.sts-good.lab servername=hostname"
    assert server.request("sts-good.lab") == sts_good
    fetches = fresh_lab.https.count("mta-sts.sts-good.lab")
    looked_up = time.monotonic()

    for host in ("mx1.sts-good.lab", "mx2.sts-good.lab"):
        fresh_lab.dns.set_records(f"_25._tcp.{host}", "TLSA", ["3 1 1 " + "ab" * 32])
    fresh_lab.dns.apply()
    # Once the DANE branch expires, DANE answers, though the STS policy is still cached.
    reply = wait_for_reply(server, "sts-good.lab", lambda r: r != sts_good)
    switched = time.monotonic() - looked_up
    assert reply == "OK dane-only"
    assert switched <= max_ttl + TIMING_MARGIN_S + FAST_ANSWER_S, f"after {switched:.2f} s"
    assert fresh_lab.https.count("mta-sts.sts-good.lab") == fetches  # no refetch needed
    assert server.postmap("sts-good.lab").value == "dane-only"
    code, data = explain(server, "sts-good.lab")
    assert (code, data["verdict"]) == (EXIT_FOUND, "dane-only")
    assert data["mta_sts_note"] == "not used: DANE takes precedence (RFC 8461 §2)"
    assert lookup_status(data, "_25._tcp.mx1.sts-good.lab", "TLSA") == "secure"


def test_dane_e2e_result_cached_for_the_smallest_ttl(
    start_server: Callable[..., ServerProcess], fresh_lab: Lab
) -> None:
    tlsa_name, tlsa_ttl = "_25._tcp.mx1.dane-mixed.lab", 2  # the other answers: 5 s (Unbound)
    current = fresh_lab.dns.get(tlsa_name, "TLSA")
    assert current is not None
    fresh_lab.dns.set_records(tlsa_name, "TLSA", current[1], ttl=tlsa_ttl)
    fresh_lab.dns.apply()
    server = start_server(dane={"min_ttl": 1}, cache={"refresh_ahead": False})
    looked_up = time.monotonic()
    assert server.request("dane-mixed.lab") == "OK dane"

    fresh_lab.dns.delete_records(tlsa_name, "TLSA")
    fresh_lab.dns.apply()
    assert server.request("dane-mixed.lab") == "OK dane"  # cached: DNS no longer says so
    assert time.monotonic() - looked_up < tlsa_ttl, "DNS change took too long to test caching"
    reply = wait_for_reply(server, "dane-mixed.lab", lambda r: r != "OK dane")
    expired = time.monotonic() - looked_up
    assert reply == "NOTFOUND "
    assert tlsa_ttl - TIMING_MARGIN_S <= expired <= tlsa_ttl + 2 * TIMING_MARGIN_S, expired

    # The cached lifetime is the smallest TTL of the DANE lookups (clamped to min_ttl 1).
    fresh_lab.dns.set_records(tlsa_name, "TLSA", current[1], ttl=tlsa_ttl)
    fresh_lab.dns.apply()
    code, data = explain(server, "dane-mixed.lab")
    assert (code, data["dane"]["level"]) == (EXIT_FOUND, "dane")
    dane_ttls = [e["ttl"] for e in dns_lookups(data) if not e["name"].startswith("_mta-sts.")]
    assert data["dane"]["ttl"] == max(1, min(dane_ttls)) <= tlsa_ttl


def test_dane_e2e_names_at_the_length_limits_keep_the_connection(
    dane_server: ServerProcess,
) -> None:
    # One persistent connection: the 63-octet label and the 253-character name are
    # answered, and the connection stays usable for the next request.
    assert dane_server.request(LONG_LABEL_DOMAIN) == "OK dane-only"
    assert dane_server.request(f"[{LONGEST_DOMAIN}]:25") == "NOTFOUND "
    assert dane_server.request(LONGEST_DOMAIN.upper() + ".") == "NOTFOUND "
    assert dane_server.request("dane-only.lab") == "OK dane-only"


def wait_for(condition: Callable[[], bool], *, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_S)


def wait_for_reply(
    server: ServerProcess, key: str, done: Callable[[str], bool], *, timeout: float = 10.0
) -> str:
    """Ask ``key`` until ``done(reply)``; returns that reply."""
    deadline = time.monotonic() + timeout
    while True:
        reply = server.request(key)
        if done(reply):
            return reply
        assert time.monotonic() < deadline, f"{key}: still {reply!r}"
        time.sleep(POLL_S)
