"""Hostile ``_smtp._tls`` records, served by the lab's signed zones, against the real reporter.

Every recipient domain chooses its ``rua``. These records try what an attacker would:
make the reporter POST to our own network (IP literals, names that resolve to loopback,
RFC 1918 and link-local addresses; a loopback listener on a port ``https_ports`` allows
notices any connection), crash it with host names and addresses its libraries reject,
redirect mail to a local user through address parsing, and flood it with destinations.
The reporter runs as ``serve`` runs it (``Reporter.run``, real DNS client, real SMTP
submission to a sink); the test then checks that no connection reached the listener, that
only validated addresses were mailed, that the flood was capped, that the honest domain's
report went out, and that the reporter is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.lab.netutil import LOOPBACK, free_port
from tests.lab.scenario import Lab, txt
from tests.lab.tlsrpt_sinks import SmtpSink
from tests.unit.tlsrpt.helpers import NO_POLICY_OK, datagram
from tlspolicy.config.tlsrpt import TlsrptConfig
from tlspolicy.dnsstub.client import ResolverClient
from tlspolicy.tlsrpt.aggregate import Batch
from tlspolicy.tlsrpt.datagram import parse_datagram
from tlspolicy.tlsrpt.record import MAX_DESTINATIONS
from tlspolicy.tlsrpt.reporter import Reporter
from tlspolicy.tlsrpt.sqlite_backend import SqliteReportStore

pytestmark = pytest.mark.integration

DAY_NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SEND_AT = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
GOOD = "good.rpt.lab"
FLOOD = "flood.rpt.lab"
FLOOD_SIZE = 300
WAIT_S = 60.0


class Listener:
    """Raw TCP on 127.0.0.1 (and ::1 where it exists), one port: counts connections."""

    def __init__(self) -> None:
        self.port = free_port(udp=False)
        self.accepted: list[tuple[str, int]] = []
        self._socks = [socket.create_server((LOOPBACK, self.port))]
        with contextlib.suppress(OSError):
            six = socket.create_server(("::1", self.port), family=socket.AF_INET6)
            self._socks.append(six)
        self._threads = [threading.Thread(target=self._accept, args=(s,), daemon=True)
                         for s in self._socks]  # fmt: skip
        for thread in self._threads:
            thread.start()

    def _accept(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, peer = sock.accept()
                self.accepted.append(peer[:2])
                conn.close()

    def close(self) -> None:
        for sock in self._socks:
            sock.close()


def hostile_records(port: int) -> dict[str, str]:
    flood = ",".join(f"mailto:r{i}@d{i}.rpt.lab" for i in range(FLOOD_SIZE))
    return {
        "ssrf.rpt.lab": (
            f"v=TLSRPTv1; rua=https://127.0.0.1:{port}/x,https://[::1]:{port}/admin,"
            f"https://0x7f000001:{port}/,https://2130706433:{port}/,"
            f"https://loop.rpt.lab:{port}/x,https://ten.rpt.lab:{port}/,"
            f"https://meta.rpt.lab:{port}/latest/meta-data/"
        ),
        "crash.rpt.lab": (
            f"v=TLSRPTv1; rua=https://{'a' * 64}.example/,https://a..b/,"
            "mailto:a%3C@x.rpt.lab,mailto:a%00b@x.rpt.lab,mailto:%E9@x.rpt.lab"
        ),
        "redirect.rpt.lab": (
            "v=TLSRPTv1; rua=mailto:root(@evil.rpt.lab,mailto:a%3Eb@evil.rpt.lab,"
            "mailto:a:b@evil.rpt.lab,mailto:%22root%22@evil.rpt.lab"
        ),
        "badpct.rpt.lab": "v=TLSRPTv1; rua=mailto:x%zz@evil.rpt.lab",
        FLOOD: f"v=TLSRPTv1; rua={flood}",
        GOOD: f"v=TLSRPTv1; rua=mailto:reports@{GOOD}",
    }


def split_txt(text: str) -> str:
    """One TXT RR in presentation form, in 255-octet strings."""
    return " ".join(txt(text[i : i + 255]) for i in range(0, len(text), 255))


@pytest.fixture
def listener() -> Iterator[Listener]:
    running = Listener()
    yield running
    running.close()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


async def test_hostile_rua_records_reach_nothing_and_stop_nothing(
    fresh_lab: Lab, tmp_path: Path, listener: Listener, smtp: SmtpSink
) -> None:
    records = hostile_records(listener.port)
    for domain, record in records.items():
        fresh_lab.dns.set_records(f"_smtp._tls.{domain}", "TXT", [split_txt(record)])
    fresh_lab.dns.set_records("loop.rpt.lab", "A", [LOOPBACK])
    fresh_lab.dns.set_records("loop.rpt.lab", "AAAA", ["::1"])
    fresh_lab.dns.set_records("ten.rpt.lab", "A", ["10.0.0.1"])
    fresh_lab.dns.set_records("meta.rpt.lab", "A", ["169.254.169.254"])
    fresh_lab.dns.apply()

    store = SqliteReportStore(str(tmp_path / "tlsrpt.sqlite3"))
    await store.open()
    batch = Batch()
    for domain in records:
        batch.add(parse_datagram(datagram(NO_POLICY_OK, domain=domain)), DAY_NOON)
    await store.add(batch)
    config = TlsrptConfig(
        reporter=True, submitter="mx.example.net", smtp_host=LOOPBACK, smtp_port=smtp.port,
        smtp_timeout=5, https_timeout=3, https_ports=(443, listener.port), delay=0, spread=0,
        check_interval=0.2,
    )  # fmt: skip
    dns = ResolverClient([fresh_lab.resolver], timeout=2.0)
    reporter = Reporter(config, store, dns, clock=lambda: SEND_AT)
    task = asyncio.create_task(reporter.run())
    flood_rcpts = [f"r{i}@d{i}.rpt.lab" for i in range(MAX_DESTINATIONS)]
    want = {f"reports@{GOOD}", *flood_rcpts}
    try:
        async with asyncio.timeout(WAIT_S):
            while {r for m in smtp.messages for r in m.recipients} != want:
                assert not task.done(), task
                await asyncio.sleep(0.1)
        passes_later = asyncio.sleep(5 * config.check_interval)
        await passes_later
        assert not task.done(), "the reporter stopped"
        deliveries = await store.deliveries(DAY_NOON.date())
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await dns.aclose()
        await store.aclose()

    assert listener.accepted == []  # no connection to our own network, on any address
    assert sorted(smtp.rcpts) == sorted(want)  # only validated addresses, the flood capped
    ssrf = [d for d in deliveries if d.domain == "ssrf.rpt.lab"]
    assert sorted(d.uri.split(":")[1] for d in ssrf) == [
        "//loop.rpt.lab",
        "//meta.rpt.lab",
        "//ten.rpt.lab",
    ]  # IP literals are not even destinations
    for row in ssrf:  # refused before any connection, and not retried
        assert row.delivered_at is None and row.given_up and row.attempts == 1, row
        assert "private-address" in (row.last_error or "")
        assert "tlsrpt.allow_private_addresses is off" in (row.last_error or "")
    for domain in ("crash.rpt.lab", "redirect.rpt.lab", "badpct.rpt.lab"):
        (dns_row,) = [d for d in deliveries if d.domain == domain]
        assert dns_row.uri == "dns:" and dns_row.given_up, dns_row
