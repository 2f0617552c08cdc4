"""Reports to a real SMTP sink and a real HTTPS sink, with real SQLite and PostgreSQL stores.

DNS is a fake here (the CLI test in test_tlsrpt_cli_e2e.py uses the lab's resolver); the
stores, aiosmtplib, aiohttp and both sinks are real. The sinks fail and recover to check
retries, and every test counts what the sinks accepted: each destination exactly once.
"""

from __future__ import annotations

import asyncio
import base64
import email
import gzip
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.policy import default
from pathlib import Path
from typing import Any

import asyncpg
import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes import FakeDns
from tests.lab.netutil import LOOPBACK
from tests.lab.tlsrpt_sinks import SINK_HOST, HttpsSink, SmtpSink, running_sinks
from tests.schemas import validate_report
from tests.unit.tlsrpt.helpers import MISMATCH, NO_POLICY_OK, datagram, sts_policy
from tlspolicy.config.tlsrpt import TlsrptConfig
from tlspolicy.dnsstub.data import AddressRecord, TxtRecord
from tlspolicy.tlsrpt.aggregate import Batch
from tlspolicy.tlsrpt.backend import open_store
from tlspolicy.tlsrpt.datagram import parse_datagram
from tlspolicy.tlsrpt.postgres_backend import TABLES
from tlspolicy.tlsrpt.reporter import Reporter
from tlspolicy.tlsrpt.store import ReportStore

pytestmark = pytest.mark.integration

DAY_NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SEND_AT = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[tuple[SmtpSink, HttpsSink]]:
    with running_sinks(tmp_path) as pair:
        yield pair


@pytest.fixture
async def config(
    request: pytest.FixtureRequest, tmp_path: Path, sinks: tuple[SmtpSink, HttpsSink]
) -> AsyncIterator[TlsrptConfig]:
    smtp, https = sinks
    backend = request.param
    url = None
    if backend == "postgres":
        url = request.getfixturevalue("postgres_server").url
        conn = await asyncpg.connect(url)
        await conn.execute(f"DROP TABLE IF EXISTS {TABLES}")
        await conn.close()
    yield TlsrptConfig(
        reporter=True, submitter="mx.example.net", organization_name="Example Networks",
        store_backend=backend, store_path=str(tmp_path / "tlsrpt.sqlite3"), store_url=url,
        smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_timeout=10,
        https_ca_file=str(https.ca_file), https_timeout=10, https_ports=(https.port,),
        allow_private_addresses=True,
        delay=0, spread=0, retry_min=300, retry_max=1200, retry_for=86400,
    )  # fmt: skip


def dns_for(https: HttpsSink) -> FakeDns:
    dns = FakeDns()
    record = f"v=TLSRPTv1; rua=mailto:reports@example.com,{https.url('/v1/tlsrpt')}"
    dns.set("_smtp._tls.example.com", "TXT", [TxtRecord((record.encode(),))])
    dns.set(SINK_HOST, "A", [AddressRecord(LOOPBACK)])
    return dns


async def stored(config: TlsrptConfig) -> ReportStore:
    store = open_store(config)
    await store.open()
    batch = Batch()
    for raw in [datagram(NO_POLICY_OK)] * 4 + [
        datagram(sts_policy(failed=True, details=[MISMATCH]))
    ] * 2:
        batch.add(parse_datagram(raw), DAY_NOON)
    await store.add(batch)
    return store


def reporter(config: TlsrptConfig, store: ReportStore, https: HttpsSink, clock: Clock) -> Reporter:
    return Reporter(config, store, dns_for(https), clock=clock)


def check_report(report: Any) -> None:
    validate_report(report)
    summaries = [p["summary"] for p in report["policies"]]
    assert sum(s["total-successful-session-count"] for s in summaries) == 4
    assert sum(s["total-failure-session-count"] for s in summaries) == 2


@pytest.mark.parametrize("config", BACKENDS, indirect=True)
async def test_tlsrpt_delivery_mail_and_https_exactly_once(
    config: TlsrptConfig, sinks: tuple[SmtpSink, HttpsSink]
) -> None:
    smtp, https = sinks
    clock = Clock(SEND_AT)
    store = await stored(config)
    try:
        attempts = await reporter(config, store, https, clock).run_once()
        assert sorted(a.outcome for a in attempts) == ["sent", "sent"]
        (mail,) = smtp.messages
        assert mail.recipients == ("reports@example.com",)
        msg = email.message_from_bytes(mail.data, policy=default)
        assert msg.get_content_type() == "multipart/report"
        assert msg["TLS-Report-Domain"] == "example.com" and msg["TLS-Required"] == "No"
        attachment = list(msg.iter_parts())[1]  # type: ignore[attr-defined]
        assert attachment.get_content_type() == "application/tlsrpt+gzip"
        check_report(json.loads(gzip.decompress(attachment.get_payload(decode=True))))
        (post,) = https.requests
        assert post.path == "/v1/tlsrpt"
        assert post.headers["Content-Type"] == "application/tlsrpt+gzip"
        check_report(json.loads(gzip.decompress(post.body)))
    finally:
        await store.aclose()
    # A restart: new store connection, new reporter, later in the day, forced.
    clock.now += timedelta(hours=3)
    store = open_store(config)
    await store.open()
    try:
        assert await reporter(config, store, https, clock).run_once(force=True) == []
    finally:
        await store.aclose()
    assert len(smtp.messages) == 1 and len(https.requests) == 1


@pytest.mark.parametrize("config", BACKENDS, indirect=True)
async def test_tlsrpt_delivery_sinks_fail_then_recover(
    config: TlsrptConfig, sinks: tuple[SmtpSink, HttpsSink]
) -> None:
    smtp, https = sinks
    smtp.fail_with = "451 4.3.0 try again later"
    https.status = 503
    clock = Clock(SEND_AT)
    store = await stored(config)
    try:
        rep = reporter(config, store, https, clock)
        first = {a.uri: a for a in await rep.run_once()}
        assert {a.outcome for a in first.values()} == {"failed"}
        assert "451" in first["mailto:reports@example.com"].detail
        assert "503" in first[https.url("/v1/tlsrpt")].detail
        https.status = 302  # a redirect is not a delivery either
        clock.now += timedelta(seconds=300)
        assert {a.outcome for a in await rep.run_once()} == {"failed"}
        smtp.fail_with = None
        https.status = 200
        clock.now += timedelta(seconds=600)
        assert sorted(a.outcome for a in await rep.run_once()) == ["sent", "sent"]
        clock.now += timedelta(hours=2)
        assert await rep.run_once(force=True) == []
        rows = {d.uri: d for d in await store.deliveries(DAY_NOON.date())}
        assert {d.attempts for d in rows.values()} == {3}
        assert all(d.state == "sent" and d.last_error is None for d in rows.values())
    finally:
        await store.aclose()
    assert smtp.refused == 2 and len(smtp.messages) == 1
    assert [r.body[:2] for r in https.requests] == [b"\x1f\x8b"] * 3  # 503, 302, 200


@pytest.mark.parametrize("config", BACKENDS, indirect=True)
async def test_tlsrpt_delivery_untrusted_https_certificate_fails(
    config: TlsrptConfig, sinks: tuple[SmtpSink, HttpsSink]
) -> None:
    _, https = sinks
    store = await stored(config)
    try:
        rep = reporter(replace(config, https_ca_file=None), store, https, Clock(SEND_AT))
        outcomes = {a.uri: a for a in await rep.run_once()}
    finally:
        await store.aclose()
    failed = outcomes[https.url("/v1/tlsrpt")]
    assert failed.outcome == "failed" and "certificate" in failed.detail.lower()
    assert not https.requests


@pytest.mark.postgres
@pytest.mark.parametrize("config", ["postgres"], indirect=True)
async def test_tlsrpt_delivery_two_reporters_share_postgres_without_duplicates(
    config: TlsrptConfig, sinks: tuple[SmtpSink, HttpsSink]
) -> None:
    smtp, https = sinks
    first = await stored(config)
    second = open_store(config)
    await second.open()
    try:
        clock = Clock(SEND_AT)
        results = await asyncio.gather(
            *(reporter(config, s, https, clock).run_once() for s in (first, second, first, second))
        )
    finally:
        await first.aclose()
        await second.aclose()
    sent = [a for attempts in results for a in attempts if a.outcome == "sent"]
    assert len(sent) == 2
    assert len(smtp.messages) == 1 and len(https.requests) == 1


@pytest.mark.parametrize("config", ["sqlite"], indirect=True)
async def test_tlsrpt_delivery_mail_is_dkim_signed(
    config: TlsrptConfig, sinks: tuple[SmtpSink, HttpsSink], tmp_path: Path
) -> None:
    smtp, https = sinks
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "tlsrpt.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signed = replace(config, dkim_key=str(key_file), dkim_domain="example.net")
    store = await stored(signed)
    try:
        await reporter(signed, store, https, Clock(SEND_AT)).run_once()
    finally:
        await store.aclose()
    (mail,) = smtp.messages

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"tlsrpt._domainkey.example.net."
        return b"v=DKIM1; k=rsa; s=tlsrpt; p=" + base64.b64encode(public)

    assert dkim.verify(mail.data, dnsfunc=dns, tlsrpt="strict")
