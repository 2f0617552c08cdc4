"""The STARTTLS probe against local aiosmtpd servers on 127.0.0.1 (trustme certificates)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiosmtpd.smtp import SMTP

from tlspolicy.check.probe import SmtpProber
from tlspolicy.check.session import Stage

HOST = "mx.example.test"


class _Handler:
    pass


async def serve(tls: ssl.SSLContext | None) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(_Handler(), hostname=HOST, tls_context=tls, timeout=5), "127.0.0.1", 0
    )


@pytest.fixture
def ca(tmp_path: Path) -> tuple[trustme.CA, str]:
    authority = trustme.CA()
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, str(path)


def server_context(authority: trustme.CA, name: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(name).configure_cert(ctx)
    return ctx


@pytest.fixture
async def servers(ca: tuple[trustme.CA, str]) -> AsyncIterator[dict[str, int]]:
    authority, _ = ca
    running = {
        "good": await serve(server_context(authority, HOST)),
        "plain": await serve(None),
    }
    try:
        yield {k: s.sockets[0].getsockname()[1] for k, s in running.items()}
    finally:
        for server in running.values():
            server.close()


async def test_probe_completes_starttls_and_collects_the_chain(servers, ca) -> None:  # type: ignore[no-untyped-def]
    prober = SmtpProber(ca_file=ca[1], timeout=5, port=servers["good"])
    result = await prober.probe(HOST, "127.0.0.1")
    assert (result.stage, result.error, result.starttls) == (Stage.DONE, "", True)
    assert result.tls is not None and result.tls.verify_error == ""
    assert result.tls.version in ("TLSv1.2", "TLSv1.3")
    assert len(result.tls.chain) >= 1
    assert result.label == f"{HOST}[127.0.0.1]" and result.family == "IPv4"


async def test_probe_untrusted_chain_is_still_collected(servers) -> None:  # type: ignore[no-untyped-def]
    prober = SmtpProber(ca_file=None, timeout=5, port=servers["good"])  # system store
    result = await prober.probe(HOST, "127.0.0.1")
    assert result.stage is Stage.DONE and result.tls is not None
    assert "unable to get local issuer certificate" in result.tls.verify_error
    assert result.tls.chain


async def test_probe_without_starttls(servers, ca) -> None:  # type: ignore[no-untyped-def]
    result = await SmtpProber(ca_file=ca[1], timeout=5, port=servers["plain"]).probe(
        HOST, "127.0.0.1"
    )
    assert (result.stage, result.starttls, result.error) == (
        Stage.STARTTLS,
        False,
        "STARTTLS is not offered",
    )


async def test_probe_refused_and_timeout(ca) -> None:  # type: ignore[no-untyped-def]
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    refused = await SmtpProber(ca_file=ca[1], timeout=2, port=port).probe(HOST, "127.0.0.1")
    assert (refused.stage, refused.error) == (Stage.CONNECT, "connection refused")

    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()
        await writer.wait_closed()

    mute = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        port = mute.sockets[0].getsockname()[1]
        slow = await SmtpProber(ca_file=ca[1], timeout=0.3, port=port).probe(HOST, "127.0.0.1")
    finally:
        release.set()
        mute.close()
        await mute.wait_closed()
        await asyncio.sleep(0.05)  # let the handler close its writer before the loop ends
    assert (slow.stage, slow.error) == (Stage.BANNER, "no answer within 0.3 s")
