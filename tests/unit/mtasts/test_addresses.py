"""The SSRF guard's address judgement: special-purpose ranges and embedded IPv4."""

from __future__ import annotations

import pytest

from tlspolicy.mtasts.addresses import is_public_address


@pytest.mark.parametrize(
    ("address", "public"),
    [
        pytest.param("8.8.8.8", True, id="v4-public"),
        pytest.param("2a00:1450:4001:80b::200e", True, id="v6-public"),
        pytest.param("127.0.0.1", False, id="loopback"),
        pytest.param("10.1.2.3", False, id="rfc1918-10"),
        pytest.param("172.16.0.1", False, id="rfc1918-172"),
        pytest.param("192.168.1.1", False, id="rfc1918-192"),
        pytest.param("169.254.169.254", False, id="link-local-metadata"),
        pytest.param("100.64.0.1", False, id="cgnat"),
        pytest.param("0.0.0.0", False, id="unspecified"),
        pytest.param("224.0.0.1", False, id="multicast"),
        pytest.param("239.255.255.250", False, id="multicast-admin"),
        pytest.param("240.0.0.1", False, id="reserved"),
        pytest.param("255.255.255.255", False, id="broadcast"),
        pytest.param("192.0.2.1", False, id="documentation"),
        pytest.param("198.18.0.1", False, id="benchmark"),
        pytest.param("::1", False, id="v6-loopback"),
        pytest.param("::", False, id="v6-unspecified"),
        pytest.param("fe80::1", False, id="v6-link-local"),
        pytest.param("fe80::1%eth0", False, id="v6-link-local-scope"),
        pytest.param("fd00::1", False, id="unique-local"),
        pytest.param("ff02::1", False, id="v6-multicast"),
        pytest.param("2001:db8::1", False, id="v6-documentation"),
        pytest.param("::ffff:127.0.0.1", False, id="mapped-loopback"),
        pytest.param("::ffff:10.0.0.1", False, id="mapped-private"),
        pytest.param("::ffff:8.8.8.8", True, id="mapped-public"),
        pytest.param("64:ff9b::a00:1", False, id="nat64-private"),
        pytest.param("64:ff9b::7f00:1", False, id="nat64-loopback"),
        pytest.param("64:ff9b::808:808", True, id="nat64-public"),
        pytest.param("64:ff9b:1::808:808", False, id="nat64-local-use"),
        pytest.param("2002:0a00:0001::1", False, id="6to4-private"),
        pytest.param("::127.0.0.1", False, id="v4-compatible"),
        pytest.param("not-an-ip", False, id="garbage"),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(address) is public
