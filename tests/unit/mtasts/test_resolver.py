"""GuardedResolver: DNS through our DnsClient, the address guard on the policy host only."""

from __future__ import annotations

import socket

import pytest

from tests.fakes import FakeDns
from tlspolicy.dnsdata import AddressRecord
from tlspolicy.errors import FetchError
from tlspolicy.mtasts.fetchcontext import resolving_for
from tlspolicy.mtasts.resolver import GuardedResolver

HOST = "mta-sts.example.test"
PROXY = "proxy.internal.test"


async def test_guarded_resolver_drops_private_addresses() -> None:
    fake = FakeDns()
    fake.set(HOST, "A", [AddressRecord("10.0.0.1"), AddressRecord("8.8.8.8")])
    fake.set(HOST, "AAAA", [AddressRecord("fd00::1"), AddressRecord("2a00:1450::1")])
    resolver = GuardedResolver(fake, allow_private=False, connect_port=None)
    results = await resolver.resolve(HOST, 443, family=socket.AF_UNSPEC)
    assert [(r["host"], r["port"], r["family"]) for r in results] == [
        ("8.8.8.8", 443, socket.AF_INET),
        ("2a00:1450::1", 443, socket.AF_INET6),
    ]


async def test_guarded_resolver_asks_one_family_when_told() -> None:
    fake = FakeDns()
    fake.set(HOST, "A", [AddressRecord("8.8.8.8")])
    resolver = GuardedResolver(fake, allow_private=False, connect_port=None)
    await resolver.resolve(HOST, 443, family=socket.AF_INET)
    assert fake.queries == [(HOST, "A")]


async def test_guarded_resolver_refuses_a_host_with_only_private_addresses() -> None:
    fake = FakeDns()
    fake.set(HOST, "A", [AddressRecord("10.0.0.1")])
    fake.set(HOST, "AAAA", [])
    resolver = GuardedResolver(fake, allow_private=False, connect_port=None)
    with pytest.raises(FetchError) as info:
        await resolver.resolve(HOST, 443, family=socket.AF_UNSPEC)
    assert info.value.kind == "private-address"


async def test_guarded_resolver_guards_only_the_policy_host_of_the_fetch() -> None:
    fake = FakeDns()
    fake.set(PROXY, "A", [AddressRecord("10.0.0.1")])
    fake.set(HOST, "A", [AddressRecord("10.0.0.2")])
    resolver = GuardedResolver(fake, allow_private=False, connect_port=8443)
    with resolving_for(HOST):
        proxy = await resolver.resolve(PROXY, 3128, family=socket.AF_INET)
        with pytest.raises(FetchError):
            await resolver.resolve(HOST, 443, family=socket.AF_INET)
    assert [(r["host"], r["port"]) for r in proxy] == [("10.0.0.1", 3128)]


async def test_guarded_resolver_connect_port_applies_to_the_policy_host() -> None:
    fake = FakeDns()
    fake.set(HOST, "A", [AddressRecord("127.0.0.1")])
    resolver = GuardedResolver(fake, allow_private=True, connect_port=8443)
    with resolving_for(HOST):
        results = await resolver.resolve(HOST + ".", 443, family=socket.AF_INET)
    assert [(r["host"], r["port"]) for r in results] == [("127.0.0.1", 8443)]
