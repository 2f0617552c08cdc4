"""Fault matrix, HTTPS policy host: connections that break, and a host that rebinds.

With no policy cached, a failed fetch means "no MTA-STS policy" (RFC 8461 §3.3, §5): the
answer is ``NOTFOUND`` and a warning names the failure; a cached policy is kept instead
(``test_mtasts_e2e_fetch_failure_keeps_cached_policy``). Slow headers and bodies, wrong,
untrusted and expired certificates, oversized bodies and private addresses are cells of
``test_mtasts_e2e.py``. DNS rebinding: the fetch connects to the address its own
(checked) lookup returned; it never resolves the name a second time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dns.message
import dns.query
import pytest

from tests.integration.cachetools import STS_GOOD, STS_HOST
from tests.lab.fakedns import REBIND_ADDRESS, FakeResolver, Mode
from tests.lab.faultyhttps import FaultyPolicyHost, HttpsFault
from tests.lab.scenario import Lab

pytestmark = pytest.mark.integration

DOMAIN = "sts-good.lab"
WARNING = f"WARNING tlspolicy.mtasts: {DOMAIN}: MTA-STS policy fetch failed"
EXPECTED_KIND = {
    HttpsFault.RESET_MID_BODY: "connect: ",
    HttpsFault.TLS_ALERT: "tls: ",
    HttpsFault.ENDLESS_BODY: "too-large: body exceeds 65536 bytes",
}


@pytest.fixture
def faulty_host(fresh_lab: Lab) -> Iterator[Any]:
    started: list[FaultyPolicyHost] = []

    def make(fault: HttpsFault) -> FaultyPolicyHost:
        body = fresh_lab.https.get(STS_HOST).body_bytes  # type: ignore[union-attr]
        host = FaultyPolicyHost(fresh_lab.https, STS_HOST, body, fault)
        host.start()
        started.append(host)
        fresh_lab.dns.set_records(STS_HOST, "A", [host.address])
        fresh_lab.dns.apply()
        return host

    yield make
    for host in started:
        host.stop()


@pytest.mark.parametrize("fault", list(HttpsFault))
def test_fault_https_broken_policy_host_is_notfound_and_logged(
    start_server: Any, faulty_host: Any, fault: HttpsFault
) -> None:
    host = faulty_host(fault)
    server = start_server()
    assert server.request(DOMAIN) == "NOTFOUND "
    assert host.connections >= 1
    [line] = [ln for ln in server.log().splitlines() if WARNING in ln]
    assert EXPECTED_KIND[fault] in line, line
    assert server.request("dane-only.lab") == "OK dane-only"  # the connection goes on
    assert server.process.poll() is None


def test_fault_https_rebinding_host_is_fetched_from_the_checked_address(
    start_server: Any, lab: Lab
) -> None:
    fake = FakeResolver(lab.resolver, STS_HOST, Mode.REBIND)
    fake.start()
    try:
        host, port = fake.address
        server = start_server(dns={"nameservers": [f"{host}:{port}"]})
        lab.https.clear_requests()
        assert server.request(DOMAIN) == "OK " + STS_GOOD
        assert lab.https.count(STS_HOST) == 1
        assert fake.a_answers == 1  # one lookup: the address checked is the address used
        # The next lookup of the name does rebind: a second resolution would have failed.
        query = dns.message.make_query(STS_HOST, "A")
        answer = dns.query.udp(query, host, port=port, timeout=5)
        assert [rr.address for rr in answer.answer[0]] == [REBIND_ADDRESS]
    finally:
        fake.stop()
