"""Inbound reports in both stores: several hosts receiving into one PostgreSQL store count
a report once, the schema is idempotent, and purging drops what is old."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from tests.integration.test_tlsrpt_store import BACKENDS, config, opened
from tests.unit.tlsrpt.inbound_vectors import OUR_DAY, gz, our_report
from tlspolicy.config.tlsrpt import TlsrptConfig
from tlspolicy.tlsrpt.inbound import Kind, Transport, Verdict
from tlspolicy.tlsrpt.inbound_receive import receive_body

pytestmark = pytest.mark.integration
__all__ = ["config"]  # the store fixture, shared with test_tlsrpt_store

NOW = 1_780_500_000.0


@pytest.mark.parametrize("config", BACKENDS, indirect=True)
async def test_tlsrpt_inbound_two_hosts_store_a_report_once(config: TlsrptConfig) -> None:
    host_a, host_b = await opened(config), await opened(config)  # schema created twice
    try:
        body = gz(our_report())
        results = await asyncio.gather(*[
            receive_body(body, Kind.GZIP, store, transport=t, now=NOW)
            for store in (host_a, host_b) for t in (Transport.HTTPS, Transport.FILE)
        ])  # fmt: skip
        verdicts = sorted(r.verdict for r in results)
        assert verdicts == [Verdict.ACCEPTED] + [Verdict.DUPLICATE] * 3
        policies = await host_b.received_policies(OUR_DAY)
        assert [(p.successful, p.failed) for p in policies] == [(90, 10)]
        failures = await host_a.received_failures(OUR_DAY, "rcpt.example")
        assert sorted((f.result_type, f.count) for f in failures) == [
            ("certificate-expired", 7), ("certificate-host-mismatch", 3)
        ]  # fmt: skip
        events = await host_a.inbound_events(0, 10)
        assert len(events) == 4 and await host_b.last_inbound_id() == events[-1].id
        accepted = next(e.id for e in events if e.verdict == Verdict.ACCEPTED)
        rows = await host_a.received_rows(accepted - 1, accepted)
        assert (len(rows[0]), len(rows[1])) == (1, 2)
        assert await host_a.purge_inbound_before(NOW + 1) == 4
        assert await host_b.received_policies(date(2000, 1, 1)) == []
    finally:
        await host_a.aclose()
        await host_b.aclose()
