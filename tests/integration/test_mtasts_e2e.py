"""Issue 3 end to end: MTA-STS (RFC 8461) through the running server.

Every case is asked three ways: the exact socketmap reply over a raw connection, the same
lookup through Postfix's own ``postmap -q`` (what smtp(8) would see), and ``tlspolicy query
--json`` (why: verdict, reason, the MTA-STS summary and each lookup with its DNSSEC status).

The catalogue cases (tests/lab/scenario.py) share one module-scoped server, because each
domain is asked only by its own test. Cases that change DNS or policy hosts at runtime
(``fresh_lab``) start their own server, so that its cache starts empty.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.server import ServerProcess
from tests.lab.https import Behavior
from tests.lab.postfix import PostmapKind
from tests.lab.scenario import Lab, sts_policy, sts_txt

pytestmark = pytest.mark.integration

FETCH_TIMEOUT_S = 2.0  # mta_sts.timeout of the module server (the slow hosts take 30 s)
TIMEOUT_MARGIN_S = 1.5  # answer time allowed beyond the fetch timeout
RECHECK_S = 1.0  # mta_sts.recheck_interval of the runtime-change tests
POLL_DEADLINE_S = 10.0
MAPS = {"QUERY": {}, "QUERYwithTLSRPT": {"tlsrpt": True}, "STRICT": {"strict_testing": True}}
EXIT_BY_REPLY = {"OK": 0, "NOTFOUND": 1, "TEMP": 75}  # tlspolicy query exit status
NO_POLICY = "no policy applied (RFC 8461 §5.1: deliver as if the domain had none)"

CHANGE = "sts-change.lab"
CHANGE_HOST = f"mta-sts.{CHANGE}"
CHANGE_V1 = f"OK secure match=mx1.{CHANGE}:mx2.{CHANGE} servername=hostname"


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sts_server(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the catalogue cases: short fetch timeout, a strict_testing map."""
    server = ServerProcess(
        lab,
        tmp_path_factory.mktemp("mtasts-e2e"),
        mta_sts={"timeout": FETCH_TIMEOUT_S},
        maps=MAPS,
    )
    try:
        yield server
    finally:
        server.stop()


def explain(server: ServerProcess, key: str, map_name: str = "QUERY") -> dict[str, Any]:
    """``tlspolicy query KEY --json`` with the server's configuration; checks the exit status."""
    done = server.cli_query(key, "--map", map_name, "--json")
    data: dict[str, Any] = json.loads(done.stdout)
    assert done.returncode == EXIT_BY_REPLY[data["reply"].split(" ", 1)[0]], done.stderr
    return data


def txt_lookup(data: dict[str, Any], domain: str) -> dict[str, Any]:
    """The trace event of the ``_mta-sts.<domain>`` TXT query."""
    name = f"_mta-sts.{domain}"
    found = [e for e in data["lookups"] if e["kind"] == "dns" and e["name"] == name]
    assert [e["detail"] for e in found] == ["TXT"], data["lookups"]
    event: dict[str, Any] = found[0]
    return event


def https_lookups(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in data["lookups"] if e["kind"] == "https"]


def warnings_for(server: ServerProcess, domain: str) -> list[str]:
    return [
        line for line in server.log().splitlines() if " WARNING " in line and f" {domain}: " in line
    ]


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + POLL_DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def raw_exchange(server: ServerProcess, payload: bytes) -> bytes:
    """One request on a new connection; returns the whole reply netstring, framing included."""
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(b"%d:%s," % (len(payload), payload))
        data = b""
        while not data.endswith(b","):
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {data!r}"
            data += chunk
    return data


# --- catalogue cases ----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One catalogue domain: what the server answers and what ``tlspolicy query`` shows."""

    domain: str
    reply: str
    reason: str  # part of the decision reason
    fetches: int = 1  # policy requests the server makes for it
    https: str | None = "HTTP 200"  # part of the https lookup's detail; None: no fetch
    txt_status: str = "secure"  # DNSSEC status of the TXT lookup
    txt_data: str = "v=STSv1; id=v1;"
    policy_id: str = "v1"
    mx: tuple[str, ...] = ()  # policy mx lines, for a policy that was fetched and applies
    mode: str = "enforce"
    error_kind: str | None = None
    warning: str | None = None  # part of the server's first-contact warning
    unreached: str | None = None  # a host that must see no request (redirect target)


def _found(domain: str, *, match: str | None = None, **kw: Any) -> Case:
    mx = kw.pop("mx", (f"mx1.{domain}", f"mx2.{domain}"))
    match = match or ":".join(mx)
    reply = f"OK secure match={match} servername=hostname"
    return Case(domain, reply, "MTA-STS policy mode enforce", mx=mx, **kw)


def _fetch_failed(
    domain: str, detail: str, *, https: str | None = None, fetches: int = 1, **kw: Any
) -> Case:
    """``fetches=0``: the request is never sent (no address, or the TLS handshake failed)."""
    return Case(
        domain,
        "NOTFOUND ",
        f"policy fetch failed: {detail}",
        fetches=fetches,
        https=https or detail,
        error_kind="fetch",
        warning=f"MTA-STS policy fetch failed for id v1: {detail}",
        **kw,
    )


CASES = [
    pytest.param(_found("sts-good.lab"), id="good"),
    pytest.param(
        _found("sts-wild.lab", mx=("*.sts-wild.lab",), match=".sts-wild.lab"), id="wildcard-mx"
    ),
    pytest.param(
        _found("sts-cname.lab", txt_data="v=STSv1; id=cname1;", policy_id="cname1"), id="cname"
    ),
    pytest.param(_found("sts-charset.lab"), id="charset-utf8"),
    pytest.param(_found("sts-lf.lab"), id="lf-line-ends"),
    pytest.param(_found("sts.unsigned.lab", txt_status="insecure"), id="unsigned-zone"),
    pytest.param(
        Case(
            "sts-twotxt.lab",
            "NOTFOUND ",
            "bad TXT record: 2 v=STSv1 records",
            fetches=0,
            https=None,
            txt_data="v=STSv1; id=two;",
            error_kind="record",
        ),
        id="two-txt",
    ),
    pytest.param(
        Case(
            "sts-badtxt.lab",
            "NOTFOUND ",
            "bad TXT record: expected ';'",
            fetches=0,
            https=None,
            txt_data="v=STSv1; id=bad id!;",
            error_kind="record",
        ),
        id="bad-txt-grammar",
    ),
    pytest.param(_fetch_failed("sts-404.lab", "status: HTTP 404 Not Found"), id="http-404"),
    pytest.param(
        _fetch_failed(
            "sts-redirect.lab",
            "redirect: HTTP 301 to https://mta-sts.redirect-target.lab/.well-known/mta-sts.txt"
            " (not followed)",
            unreached="mta-sts.redirect-target.lab",
        ),
        id="redirect",
    ),
    pytest.param(
        _fetch_failed("sts-ctype.lab", "content-type: Content-Type 'text/html' (need text/plain)"),
        id="content-type",
    ),
    pytest.param(
        _fetch_failed(
            "sts-untrusted.lab", "certificate: ", https="unable to get local issuer", fetches=0
        ),
        id="untrusted-ca",
    ),
    pytest.param(
        _fetch_failed(
            "sts-wrongname.lab",
            "certificate: ",
            https="certificate is not valid for 'mta-sts.sts-wrongname.lab'",
            fetches=0,
        ),
        id="wrong-cert-name",
    ),
    pytest.param(
        _fetch_failed(
            "sts-expired.lab", "certificate: ", https="certificate has expired", fetches=0
        ),
        id="expired-cert",
    ),
    pytest.param(
        _fetch_failed(
            "sts-big.lab", "too-large: Content-Length 71"
        )  # 70 KiB and a line, id="oversized-static"
    ),
    pytest.param(
        _fetch_failed("sts-bigchunk.lab", "too-large: body exceeds 65536 bytes"),
        id="oversized-chunked",
    ),
    pytest.param(
        _fetch_failed(
            "sts-nohost.lab",
            "dns: cannot resolve mta-sts.sts-nohost.lab: no A/AAAA records",
            fetches=0,
        ),
        id="no-policy-host",
    ),
    pytest.param(
        Case(
            "sts-badpolicy.lab",
            "NOTFOUND ",
            "invalid policy: missing version field",
            error_kind="policy",
            warning="MTA-STS invalid policy for id v1: missing version field",
        ),
        id="invalid-policy",
    ),
    pytest.param(
        Case(
            "sts-none.lab",
            "NOTFOUND ",
            "MTA-STS policy mode none",
            mode="none",
            mx=("mx1.sts-none.lab", "mx2.sts-none.lab"),
        ),
        id="mode-none",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_mtasts_e2e_catalogue(sts_server: ServerProcess, lab: Lab, case: Case) -> None:
    host = f"mta-sts.{case.domain}"
    before = lab.https.count(host)

    assert sts_server.request(case.domain) == case.reply
    postmap = sts_server.postmap(case.domain)
    if case.reply.startswith("OK "):
        assert postmap.kind is PostmapKind.FOUND, postmap
        assert postmap.value == case.reply.removeprefix("OK ")
    else:
        assert postmap.kind is PostmapKind.NOTFOUND, postmap
    # The second (postmap) answer came from the cache: one fetch at most, SNI = policy host.
    requests = lab.https.requests_for(host)[before:]
    assert len(requests) == case.fetches
    assert all((r.host, r.sni, r.method) == (host, host, "GET") for r in requests)
    if case.unreached is not None:
        assert lab.https.requests_for(case.unreached) == []

    warnings = warnings_for(sts_server, case.domain)
    if case.warning is None:
        assert warnings == []
    else:
        [line] = warnings
        assert f"WARNING tlspolicy.mtasts: {case.domain}: {case.warning}" in line
        assert line.endswith(f"{NO_POLICY}; no new fetch for this id for 300s")

    data = explain(sts_server, case.domain)
    assert data["reply"] == case.reply
    assert data["verdict"] == ("secure" if case.reply.startswith("OK ") else "notfound")
    assert case.reason in data["reason"]
    assert data["dane"]["level"] == "none"
    txt = txt_lookup(data, case.domain)
    assert txt["status"] == case.txt_status
    assert any(case.txt_data in item for item in txt["data"]), txt
    sts = data["mta_sts"]
    if case.mx:
        assert (sts["mode"], sts["policy_id"], sts["mx"]) == (
            case.mode,
            case.policy_id,
            list(case.mx),
        )
    else:
        assert "mode" not in sts
    assert sts.get("error_kind") == case.error_kind
    if case.error_kind is not None:
        assert case.reason in sts["error"]
    fetched = https_lookups(data)
    if case.https is None:
        assert fetched == []
    else:
        [event] = fetched
        assert event["name"] == f"https://{host}/.well-known/mta-sts.txt"
        assert event["status"] == ("error" if case.error_kind == "fetch" else "ok")
        assert case.https in event["detail"]


def test_mtasts_e2e_cname_policy_host_keeps_customer_name(
    sts_server: ServerProcess, lab: Lab
) -> None:
    """RFC 8461 §8.2: with both names delegated by CNAME, the TXT comes from the provider and
    the address from the provider's host, but the policy host stays mta-sts.<domain> (SNI,
    Host header, certificate name)."""
    host = "mta-sts.sts-cname.lab"
    before = lab.https.count(host)
    data = explain(sts_server, "sts-cname.lab")
    assert (
        data["reply"] == "OK secure match=mx1.sts-cname.lab:mx2.sts-cname.lab servername=hostname"
    )
    [request] = lab.https.requests_for(host)[before:]
    assert (request.host, request.sni) == (host, host)
    txt = txt_lookup(data, "sts-cname.lab")
    assert txt["data"][0] == "_mta-sts.sts-cname.lab CNAME _mta-sts.sts-cname.provider.lab"
    [address] = [
        e
        for e in data["lookups"]
        if e["kind"] == "dns" and e["name"] == host and e["detail"] == "A"
    ]
    assert address["status"] == "secure"
    assert address["data"] == [f"{host} CNAME policy-host.provider.lab", lab.https.address]


@pytest.mark.parametrize(
    "domain",
    [pytest.param("sts-slowhead.lab", id="head"), pytest.param("sts-slowbody.lab", id="body")],
)
def test_mtasts_e2e_slow_policy_host_times_out(
    sts_server: ServerProcess, lab: Lab, domain: str
) -> None:
    started = time.monotonic()
    assert sts_server.request(domain) == "NOTFOUND "
    elapsed = time.monotonic() - started
    assert FETCH_TIMEOUT_S - 0.1 <= elapsed < FETCH_TIMEOUT_S + TIMEOUT_MARGIN_S
    assert lab.https.count(f"mta-sts.{domain}") == 1  # the host was reached: it was slow
    assert sts_server.postmap(domain).kind is PostmapKind.NOTFOUND  # cached: no second wait
    reason = f"timeout: no complete answer within {FETCH_TIMEOUT_S:g}s"
    [line] = warnings_for(sts_server, domain)
    assert f"WARNING tlspolicy.mtasts: {domain}: MTA-STS policy fetch failed for id v1: " in line
    assert reason in line and NO_POLICY in line

    data = explain(sts_server, domain)
    assert data["verdict"] == "notfound"
    assert data["reason"] == f"policy fetch failed: {reason}"
    [event] = https_lookups(data)
    assert event["status"] == "error" and event["detail"] == reason
    fetch_ms = (FETCH_TIMEOUT_S - 0.1) * 1000, (FETCH_TIMEOUT_S + TIMEOUT_MARGIN_S) * 1000
    assert fetch_ms[0] <= event["elapsed_ms"] < fetch_ms[1]
    assert data["mta_sts"]["error_kind"] == "fetch"


def test_mtasts_e2e_testing_mode_and_strict_testing(sts_server: ServerProcess) -> None:
    domain = "sts-testing.lab"
    strict = f"OK secure match=mx1.{domain}:mx2.{domain} servername=hostname"
    assert sts_server.request(domain) == "NOTFOUND "
    assert sts_server.request(domain, "QUERYwithTLSRPT") == "NOTFOUND "
    assert sts_server.request(domain, "STRICT") == strict
    assert sts_server.postmap(domain).kind is PostmapKind.NOTFOUND
    assert sts_server.postmap(domain, "STRICT").value == strict.removeprefix("OK ")

    data = explain(sts_server, domain)
    assert (data["verdict"], data["reason"]) == ("notfound", "MTA-STS policy mode testing")
    assert data["profile"]["strict_testing"] is False
    assert (data["mta_sts"]["mode"], data["mta_sts"]["policy_id"]) == ("testing", "v1")
    data = explain(sts_server, domain, "STRICT")
    assert data["reply"] == strict
    assert (data["verdict"], data["reason"]) == ("secure", "MTA-STS mode testing (strict_testing)")
    assert data["profile"]["strict_testing"] is True
    assert txt_lookup(data, domain)["status"] == "secure"


TLSRPT_REPLY = (
    "OK secure match=mail.sts-tlsrpt.lab:.sts-tlsrpt.lab:backupmx.sts-tlsrpt.lab"
    " servername=hostname policy_type=sts policy_domain=sts-tlsrpt.lab"
    " mx_host_pattern=mail.sts-tlsrpt.lab mx_host_pattern=*.sts-tlsrpt.lab"
    " mx_host_pattern=backupmx.sts-tlsrpt.lab"
    " { policy_string = version: STSv1 } { policy_string = mode: enforce }"
    " { policy_string = mx: mail.sts-tlsrpt.lab } { policy_string = mx: *.sts-tlsrpt.lab }"
    " { policy_string = mx: backupmx.sts-tlsrpt.lab } { policy_string = max_age: 604800 }"
)


def test_mtasts_e2e_tlsrpt_attributes_byte_exact(sts_server: ServerProcess) -> None:
    """docs/protocol-notes.md §3.1: the RFC 8461 §3.2 example policy (457 bytes for example.com; the
    lab domain is 3 bytes longer in each of its 10 places)."""
    raw = raw_exchange(sts_server, b"QUERYwithTLSRPT sts-tlsrpt.lab")
    assert raw == b"487:" + TLSRPT_REPLY.encode() + b","
    plain = raw_exchange(sts_server, b"QUERY sts-tlsrpt.lab")
    assert plain == (
        b"95:OK secure match=mail.sts-tlsrpt.lab:.sts-tlsrpt.lab:backupmx.sts-tlsrpt.lab"
        b" servername=hostname,"
    )
    postmap = sts_server.postmap("sts-tlsrpt.lab", "QUERYwithTLSRPT")
    assert postmap.kind is PostmapKind.FOUND, postmap
    assert postmap.value == TLSRPT_REPLY.removeprefix("OK ")

    data = explain(sts_server, "sts-tlsrpt.lab", "QUERYwithTLSRPT")
    assert data["reply"] == TLSRPT_REPLY
    assert data["profile"]["tlsrpt"] is True
    sts = data["mta_sts"]
    assert (sts["mode"], sts["policy_id"], sts["max_age"]) == ("enforce", "v1", 604800)
    assert sts["mx"] == ["mail.sts-tlsrpt.lab", "*.sts-tlsrpt.lab", "backupmx.sts-tlsrpt.lab"]
    assert txt_lookup(data, "sts-tlsrpt.lab")["status"] == "secure"


# --- runtime changes: each with its own server ------------------------------------------


def _change_policy(lab: Lab, policy_id: str, behavior: Behavior) -> None:
    lab.https.set(CHANGE_HOST, behavior)
    lab.dns.set_records(f"_mta-sts.{CHANGE}", "TXT", [sts_txt(policy_id)])
    lab.dns.apply()


def test_mtasts_e2e_id_change_refetches(start_server: Any, fresh_lab: Lab) -> None:
    server = start_server(mta_sts={"recheck_interval": RECHECK_S})
    assert server.request(CHANGE) == CHANGE_V1
    cached_at = time.monotonic()
    assert fresh_lab.https.count(CHANGE_HOST) == 1
    _change_policy(fresh_lab, "v2", Behavior(body=sts_policy("enforce", [f"mx3.{CHANGE}"])))
    new = f"OK secure match=mx3.{CHANGE} servername=hostname"

    sleep_until(cached_at + RECHECK_S + 0.05)
    assert server.request(CHANGE) == CHANGE_V1  # served from cache; re-check runs behind
    wait_for(lambda: server.request(CHANGE) == new, "the new policy")
    assert fresh_lab.https.count(CHANGE_HOST) == 2
    assert server.postmap(CHANGE).value == new.removeprefix("OK ")
    # The new policy names mx3 only, so the lab's MX hosts are no longer covered: that is
    # the one warning (drift), and nothing says "downgrade" (enforce stays enforce).
    (drift,) = warnings_for(server, CHANGE)
    assert "policy drift" in drift and "mx1.sts-change.lab, mx2.sts-change.lab" in drift

    data = explain(server, CHANGE)
    assert data["reply"] == new
    assert (data["mta_sts"]["policy_id"], data["mta_sts"]["mx"]) == ("v2", [f"mx3.{CHANGE}"])
    txt = txt_lookup(data, CHANGE)
    assert txt["status"] == "secure" and "'v=STSv1; id=v2;'" in txt["data"]


def test_mtasts_e2e_unchanged_id_past_max_age_keeps_policy(
    start_server: Any, fresh_lab: Lab
) -> None:
    """A policy is valid for max_age; with the id unchanged it is fetched again before it
    ends (proactive refresh, RFC 8461 §3.3) and keeps being applied without a gap."""
    max_age = 2
    body = sts_policy("enforce", [f"mx1.{CHANGE}", f"mx2.{CHANGE}"], max_age=max_age)
    fresh_lab.https.set(CHANGE_HOST, Behavior(body=body))
    server = start_server(mta_sts={"recheck_interval": RECHECK_S})
    started = time.monotonic()
    replies: list[str] = []
    while time.monotonic() < started + 2 * max_age + 0.5:
        replies.append(server.request(CHANGE))
        time.sleep(0.2)
    assert set(replies) == {CHANGE_V1}
    assert fresh_lab.https.count(CHANGE_HOST) >= 3  # first contact + refetches, same id
    assert server.postmap(CHANGE).value == CHANGE_V1.removeprefix("OK ")
    assert warnings_for(server, CHANGE) == []

    data = explain(server, CHANGE)
    assert data["reply"] == CHANGE_V1
    sts = data["mta_sts"]
    assert (sts["policy_id"], sts["max_age"], sts["mode"]) == ("v1", max_age, "enforce")


def test_mtasts_e2e_fetch_failure_keeps_cached_policy(start_server: Any, fresh_lab: Lab) -> None:
    """RFC 8461 §5.1: a failed fetch keeps the valid cached policy; §3.3: the failed id is
    not fetched again for five minutes, however often the TXT id is re-checked."""
    server = start_server(mta_sts={"recheck_interval": RECHECK_S})
    assert server.request(CHANGE) == CHANGE_V1
    cached_at = time.monotonic()
    _change_policy(fresh_lab, "v2", Behavior(body=b"gone\n", status=404))

    sleep_until(cached_at + RECHECK_S + 0.05)
    assert server.request(CHANGE) == CHANGE_V1
    wait_for(lambda: fresh_lab.https.count(CHANGE_HOST) == 2, "the fetch for id v2")
    wait_for(lambda: bool(warnings_for(server, CHANGE)), "the fetch warning")
    [line] = warnings_for(server, CHANGE)
    assert "MTA-STS policy fetch failed for id v2: status: HTTP 404 Not Found" in line
    assert "cached enforce policy id v1 kept" in line

    for _ in range(2):  # two more id re-checks, both inside the backoff
        sleep_until(time.monotonic() + RECHECK_S + 0.05)
        assert server.request(CHANGE) == CHANGE_V1
    time.sleep(0.3)  # let the last background re-check finish (a TXT lookup: milliseconds)
    assert fresh_lab.https.count(CHANGE_HOST) == 2
    assert len(warnings_for(server, CHANGE)) == 1
    assert server.postmap(CHANGE).value == CHANGE_V1.removeprefix("OK ")

    # tlspolicy query has no cache: it shows what the server's re-check found.
    data = explain(server, CHANGE)
    assert data["reply"] == "NOTFOUND "
    sts = data["mta_sts"]
    assert (sts["record_id"], sts["error_kind"]) == ("v2", "fetch")
    assert "HTTP 404" in sts["error"]
    [event] = https_lookups(data)
    assert event["status"] == "error" and "HTTP 404" in event["detail"]


def test_mtasts_e2e_mode_none_replaces_cached_enforce(start_server: Any, fresh_lab: Lab) -> None:
    server = start_server(mta_sts={"recheck_interval": RECHECK_S})
    assert server.request(CHANGE) == CHANGE_V1
    cached_at = time.monotonic()
    _change_policy(fresh_lab, "v2", Behavior(body=sts_policy("none", [])))

    sleep_until(cached_at + RECHECK_S + 0.05)
    assert server.request(CHANGE) == CHANGE_V1  # re-check starts; cached answer meanwhile
    wait_for(lambda: server.request(CHANGE) == "NOTFOUND ", "mode none to apply")
    assert fresh_lab.https.count(CHANGE_HOST) == 2
    assert server.postmap(CHANGE).kind is PostmapKind.NOTFOUND
    assert server.request(CHANGE, "QUERYwithTLSRPT") == "NOTFOUND "
    [line] = warnings_for(server, CHANGE)
    assert "policy downgrade: MTA-STS enforce -> none" in line

    data = explain(server, CHANGE)
    assert (data["verdict"], data["reason"]) == ("notfound", "MTA-STS policy mode none")
    sts = data["mta_sts"]
    assert (sts["mode"], sts["policy_id"], sts["mx"]) == ("none", "v2", [])


def test_mtasts_e2e_private_policy_host_refused(start_server: Any, fresh_lab: Lab) -> None:
    domain, host = "sts-good.lab", "mta-sts.sts-good.lab"
    server = start_server(mta_sts={"allow_private_addresses": False})
    assert server.request(domain) == "NOTFOUND "
    assert server.postmap(domain).kind is PostmapKind.NOTFOUND
    [line] = warnings_for(server, domain)
    assert "refused to connect to a private address" in line
    assert f"{host} has no public address ({fresh_lab.https.address}" in line

    data = explain(server, domain)
    assert data["verdict"] == "notfound"
    assert "private-address: refused to connect to a private address" in data["reason"]
    [event] = https_lookups(data)
    assert event["status"] == "error" and event["detail"].startswith("private-address: ")
    address = [e for e in data["lookups"] if e["kind"] == "dns" and e["name"] == host]
    assert {e["status"] for e in address} == {"secure"}
    assert fresh_lab.https.requests_for(host) == []  # neither the server nor the CLI connected


def test_mtasts_e2e_dns_failure_temp(start_server: Any, fresh_lab: Lab) -> None:
    """``mta_sts.dns_failure: temp``: a failed TXT lookup with nothing cached defers (TEMP);
    a domain with a valid cached policy keeps it (RFC 8461 §5.1)."""
    server = start_server(mta_sts={"dns_failure": "temp", "recheck_interval": RECHECK_S})
    cached = "OK secure match=mx1.sts-lf.lab:mx2.sts-lf.lab servername=hostname"
    assert server.request("sts-lf.lab") == cached
    cached_at = time.monotonic()
    for domain in ("sts-good.lab", "sts-lf.lab"):
        fresh_lab.dns.corrupt(f"_mta-sts.{domain}", "TXT")
    fresh_lab.dns.apply()

    reply = server.request("sts-good.lab")
    assert reply.startswith(
        "TEMP MTA-STS lookup failed: TXT lookup failed: TXT _mta-sts.sts-good.lab: servfail: "
    ), reply
    assert "DNSSEC Bogus" in reply
    assert server.postmap("sts-good.lab").kind is PostmapKind.TEMP
    assert fresh_lab.https.count("mta-sts.sts-good.lab") == 0

    sleep_until(cached_at + RECHECK_S + 0.05)
    assert server.request("sts-lf.lab") == cached
    wait_for(lambda: bool(warnings_for(server, "sts-lf.lab")), "the TXT failure warning")
    assert server.request("sts-lf.lab") == cached
    [line] = warnings_for(server, "sts-lf.lab")
    assert "MTA-STS TXT lookup failed: TXT _mta-sts.sts-lf.lab: servfail" in line
    assert "cached enforce policy id v1 kept" in line

    data = explain(server, "sts-good.lab")
    assert data["verdict"] == "temp"
    assert data["reason"].startswith("MTA-STS lookup failed: TXT lookup failed: ")
    txt = txt_lookup(data, "sts-good.lab")
    assert txt["status"] == "error" and txt["data"][0] == "servfail"
    assert data["mta_sts"]["error_kind"] == "dns"
    assert https_lookups(data) == []


def test_mtasts_e2e_dns_failure_notfound_by_default(start_server: Any, fresh_lab: Lab) -> None:
    fresh_lab.dns.corrupt("_mta-sts.sts-good.lab", "TXT")
    fresh_lab.dns.apply()
    server = start_server()
    assert server.request("sts-good.lab") == "NOTFOUND "
    assert server.postmap("sts-good.lab").kind is PostmapKind.NOTFOUND
    [line] = warnings_for(server, "sts-good.lab")
    assert "MTA-STS TXT lookup failed: TXT _mta-sts.sts-good.lab: servfail" in line
    assert NO_POLICY in line

    data = explain(server, "sts-good.lab")
    assert (data["verdict"], data["mta_sts"]["error_kind"]) == ("notfound", "dns")
    assert txt_lookup(data, "sts-good.lab")["status"] == "error"
    assert fresh_lab.https.count("mta-sts.sts-good.lab") == 0
