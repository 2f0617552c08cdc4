"""connect_addresses: DNS through our DnsClient, the address guard on the policy host only."""

from __future__ import annotations

import socket

import pytest

from tests.fakes import FakeDns
from tlspolicy.dnsstub.data import AddressRecord
from tlspolicy.errors import FetchError
from tlspolicy.mtasts.resolver import connect_addresses

HOST = "mta-sts.example.test"
PROXY = "proxy.internal.test"


async def test_connect_addresses_drops_private_addresses() -> None:
    fake = FakeDns()
    fake.set(HOST, "A", [AddressRecord("10.0.0.1"), AddressRecord("8.8.8.8")])
    fake.set(HOST, "AAAA", [AddressRecord("fd00::1"), AddressRecord("2a00:1450::1")])
    infos = await connect_addresses(fake, HOST, 443, refuse_private=True)
    assert [(family, address) for family, _, _, _, address in infos] == [
        (socket.AF_INET, ("8.8.8.8", 443)),
        (socket.AF_INET6, ("2a00:1450::1", 443, 0, 0)),
    ]


async def test_connect_addresses_refuses_a_host_with_only_private_addresses() -> None:
    fake = FakeDns()
    fake.set(HOST, "A", [AddressRecord("10.0.0.1")])
    fake.set(HOST, "AAAA", [])
    with pytest.raises(FetchError) as info:
        await connect_addresses(fake, HOST, 443, refuse_private=True)
    assert info.value.kind == "private-address"
    assert "10.0.0.1" in info.value.detail


async def test_connect_addresses_allows_private_addresses_when_told() -> None:
    fake = FakeDns()
    fake.set(HOST + ".", "A", [AddressRecord("127.0.0.1")])
    fake.set(HOST, "A", [AddressRecord("127.0.0.1")])
    infos = await connect_addresses(fake, HOST + ".", 8443, refuse_private=False)
    assert [address for *_, address in infos] == [("127.0.0.1", 8443)]
    assert (HOST, "A") in fake.queries  # asked without the trailing dot


async def test_connect_addresses_does_not_guard_the_operators_proxy() -> None:
    fake = FakeDns()
    fake.set(PROXY, "A", [AddressRecord("10.0.0.1")])
    infos = await connect_addresses(fake, PROXY, 3128, refuse_private=False)
    assert [address for *_, address in infos] == [("10.0.0.1", 3128)]


@pytest.mark.parametrize(
    ("literal", "family"), [("10.1.2.3", socket.AF_INET), ("[fd00::1]", socket.AF_INET6)]
)
async def test_connect_addresses_takes_an_ip_literal_proxy_as_given(
    literal: str, family: int
) -> None:
    fake = FakeDns()
    infos = await connect_addresses(fake, literal, 3128, refuse_private=False)
    assert [(f, address[0]) for f, _, _, _, address in infos] == [(family, literal.strip("[]"))]
    assert fake.queries == []


async def test_connect_addresses_names_the_dns_failure() -> None:
    fake = FakeDns()
    fake.fail(HOST, "A")
    fake.set(HOST, "AAAA", [])
    with pytest.raises(FetchError) as info:
        await connect_addresses(fake, HOST, 443, refuse_private=False)
    assert info.value.kind == "dns"
    assert "cannot resolve" in info.value.detail
