"""Fault matrix, DNS: the real server behind a resolver that misbehaves (``tests.lab.fakedns``).

Only questions under ``dane-mixed.lab`` are faulted; the self-check names pass through, so
what is tested is the answer for one domain. A fault the server cannot see through is
``TEMP`` (Postfix defers and retries: never a weaker policy, never a dropped connection); a
stray or forged reply it must ignore leaves the real answer intact. Time-outs, SERVFAIL
from validation (bogus) and the blackhole resolver are in ``test_dane_e2e.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.server import ServerProcess
from tests.lab.fakedns import FakeResolver, Mode
from tests.lab.scenario import Lab

DOMAIN = "dane-mixed.lab"
DNS_TIMEOUT_S = 1.0  # the server's dns.timeout: time-out cells end after about this long


@pytest.fixture
def fake_dns(lab: Lab) -> Iterator[Any]:
    started: list[FakeResolver] = []

    def make(mode: Mode) -> FakeResolver:
        fake = FakeResolver(lab.resolver, DOMAIN, mode)
        fake.start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()


def _server_behind(start_server: Any, fake: FakeResolver) -> ServerProcess:
    host, port = fake.address
    dns = {"nameservers": [f"{host}:{port}"], "timeout": DNS_TIMEOUT_S}
    server: ServerProcess = start_server(dns=dns)
    return server


@pytest.fixture(scope="module")
def reference() -> dict[str, str]:
    return {}


def _reference_answer(start_server: Any, fake_dns: Any, reference: dict[str, str]) -> str:
    if "answer" not in reference:
        server = _server_behind(start_server, fake_dns(Mode.PASS))
        reference["answer"] = server.request(DOMAIN)
        assert reference["answer"].startswith("OK "), reference["answer"]
    return reference["answer"]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        (Mode.SERVFAIL, "servfail"),
        (Mode.REFUSED, "refused"),
        (Mode.GARBAGE, "timeout"),  # dropped: nothing else came
        (Mode.WRONG_ID, "timeout"),
        (Mode.TRUNCATED_NO_TCP, "network"),
        (Mode.TRUNCATED_TCP_STALLS, "timeout"),
    ],
)
def test_fault_dns_unusable_answer_is_temp_and_connection_stays(
    start_server: Any, fake_dns: Any, mode: Mode, reason: str
) -> None:
    fake = fake_dns(mode)
    server = _server_behind(start_server, fake)
    answer = server.request(DOMAIN)
    assert answer.startswith(f"TEMP MX lookup failed: {reason}"), answer
    assert fake.faulted >= 1
    # The same connection goes on, and other domains are unaffected.
    assert server.request("dane-only.lab").startswith("OK ")
    assert server.process.poll() is None


@pytest.mark.parametrize(
    "mode", [Mode.GARBAGE_THEN_ANSWER, Mode.WRONG_ID_THEN_ANSWER, Mode.WRONG_SOURCE_THEN_ANSWER]
)
def test_fault_dns_stray_reply_is_ignored_and_the_real_answer_used(
    start_server: Any, fake_dns: Any, reference: dict[str, str], mode: Mode
) -> None:
    expected = _reference_answer(start_server, fake_dns, reference)
    fake = fake_dns(mode)
    server = _server_behind(start_server, fake)
    assert server.request(DOMAIN) == expected
    assert fake.faulted >= 1
