"""The TLSRPT stores on real SQLite and real PostgreSQL: counts add up, claims are exclusive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.unit.tlsrpt.helpers import MISMATCH, NO_POLICY_OK, datagram, sts_policy
from tlspolicy.config.tlsrpt import TlsrptConfig
from tlspolicy.tlsrpt.aggregate import Batch
from tlspolicy.tlsrpt.backend import open_store
from tlspolicy.tlsrpt.datagram import FailureDetail, parse_datagram
from tlspolicy.tlsrpt.postgres_backend import TABLES
from tlspolicy.tlsrpt.store import ReportStore

pytestmark = pytest.mark.integration

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = NOON.date()
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture
async def config(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TlsrptConfig]:
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_server").url
        conn = await asyncpg.connect(url)
        await conn.execute(f"DROP TABLE IF EXISTS {TABLES}")
        await conn.close()
    yield TlsrptConfig(
        store_backend=request.param, store_path=str(tmp_path / "db" / "tlsrpt.sqlite3"),
        store_url=url,
    )  # fmt: skip


def batch(n_ok: int, n_failed: int, when: datetime = NOON) -> Batch:
    b = Batch()
    for _ in range(n_ok):
        b.add(parse_datagram(datagram(NO_POLICY_OK)), when)
    for _ in range(n_failed):
        b.add(parse_datagram(datagram(sts_policy(failed=True, details=[MISMATCH]))), when)
    return b


async def opened(config: TlsrptConfig) -> ReportStore:
    store = open_store(config)
    await store.open()
    return store


@pytest.mark.parametrize("config", BACKENDS, indirect=True)
async def test_tlsrpt_store_adds_up_and_reads_back(config: TlsrptConfig) -> None:
    store = await opened(config)
    try:
        await store.add(batch(2, 1))
        await store.add(batch(3, 2))
        await store.add(batch(1, 0, NOON + timedelta(days=1)))
        groups = {g.policy.policy_type.value: g for g in await store.day_counts(DAY)}
        assert (groups["no-policy-found"].successful, groups["no-policy-found"].failed) == (5, 0)
        sts = groups["sts"]
        assert (sts.successful, sts.failed) == (0, 3)
        (key,) = sts.failures
        assert isinstance(key, FailureDetail) and sts.failures[key] == 3
        assert key.receiving_ip == "198.51.100.7"
        assert await store.days(DAY) == [DAY, DAY + timedelta(days=1)]
        assert await store.day_counts(DAY, "other.example") == []
        assert await store.purge_before(DAY + timedelta(days=1)) == 2
        assert await store.day_counts(DAY) == []
    finally:
        await store.aclose()


@pytest.mark.parametrize("config", BACKENDS, indirect=True)
async def test_tlsrpt_store_concurrent_writers_add_up(config: TlsrptConfig) -> None:
    stores = [await opened(config) for _ in range(3)]
    try:
        await asyncio.gather(*(s.add(batch(10, 5)) for s in stores for _ in range(4)))
        groups = await stores[0].day_counts(DAY)
    finally:
        for s in stores:
            await s.aclose()
    assert sum(g.successful for g in groups) == 120
    assert sum(g.failed for g in groups) == 60
    assert sum(n for g in groups for n in g.failures.values()) == 60


@pytest.mark.parametrize("config", BACKENDS, indirect=True)
async def test_tlsrpt_store_claim_is_exclusive_and_final_after_success(
    config: TlsrptConfig,
) -> None:
    a, b = await opened(config), await opened(config)
    now = NOON.timestamp()
    rid, uri = "r1@x", "mailto:a@example.com"
    try:
        claims = await asyncio.gather(
            *(s.claim(rid, uri, DAY, "example.com", now=now, lease_s=60) for s in (a, b, a, b))
        )
        assert sum(c is not None for c in claims) == 1
        await a.finish(rid, uri, now=now, error="451 later", next_attempt=now + 300)
        assert await b.claim(rid, uri, DAY, "example.com", now=now + 299, lease_s=60) is None
        again = await b.claim(rid, uri, DAY, "example.com", now=now + 300, lease_s=60)
        assert again is not None and again.attempts == 1 and again.last_error == "451 later"
        await b.finish(rid, uri, now=now + 301, error=None, next_attempt=None)
        assert await a.claim(rid, uri, DAY, "example.com", now=now + 9999, lease_s=60) is None
        (row,) = await a.deliveries(DAY)
        assert (row.state, row.attempts, row.delivered_at) == ("sent", 2, now + 301)
        assert row.first_attempt == now
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.parametrize("config", BACKENDS, indirect=True)
async def test_tlsrpt_store_expired_lease_can_be_taken_over(config: TlsrptConfig) -> None:
    store = await opened(config)
    now = NOON.timestamp()
    try:
        assert await store.claim("r", "u", DAY, "d.example", now=now, lease_s=60)
        assert await store.claim("r", "u", DAY, "d.example", now=now + 59, lease_s=60) is None
        assert await store.claim("r", "u", DAY, "d.example", now=now + 60, lease_s=60)
    finally:
        await store.aclose()
