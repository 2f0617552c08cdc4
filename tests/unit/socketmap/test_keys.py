from __future__ import annotations

import pytest

from tlspolicy.socketmap.keys import normalize_key


@pytest.mark.parametrize(
    ("key", "domain"),
    [
        pytest.param("example.com", "example.com", id="plain"),
        pytest.param("Example.COM", "example.com", id="lowercase"),
        pytest.param("example.com.", "example.com", id="trailing-dot"),
        pytest.param("[mail.example.com]", "mail.example.com", id="bracketed"),
        pytest.param("[mail.example.com]:587", "mail.example.com", id="bracketed-port"),
        pytest.param("mail.example.com:25", "mail.example.com", id="host-port"),
        pytest.param("example.com:submission", "example.com", id="host-service"),
        pytest.param("bücher.example", "xn--bcher-kva.example", id="u-label"),
        pytest.param("BÜCHER.example", "xn--bcher-kva.example", id="u-label-upper"),
        pytest.param("xn--bcher-kva.example", "xn--bcher-kva.example", id="a-label"),
        pytest.param("a-b.example", "a-b.example", id="hyphen"),
    ],
)
def test_normalize_key_domains(key: str, domain: str) -> None:
    assert normalize_key(key).domain == domain


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param(".example.com", id="parent-probe"),
        pytest.param("192.0.2.1", id="ipv4"),
        pytest.param("2001:db8::1", id="ipv6"),
        pytest.param("[192.0.2.1]", id="ipv4-literal"),
        pytest.param("[192.0.2.1]:25", id="ipv4-literal-port"),
        pytest.param("[ipv6:2001:db8::1]", id="ipv6-literal"),
        pytest.param("[2001:db8::1]:25", id="ipv6-literal-port"),
        pytest.param("example.com..", id="two-trailing-dots"),
        pytest.param("a..b", id="empty-label"),
        pytest.param("localhost", id="single-label"),
        pytest.param("-a.example", id="leading-hyphen"),
        pytest.param("a_b.example", id="underscore"),
        pytest.param("a b.example", id="space"),
        pytest.param("[mail.example.com", id="unclosed-bracket"),
        pytest.param("example.com:", id="empty-port"),
        pytest.param("1.2.3.4.5", id="numeric-tld"),
        pytest.param(".".join(["a" * 60] * 5), id="name-too-long"),
    ],
)
def test_normalize_key_no_policy(key: str) -> None:
    result = normalize_key(key)
    assert result.domain is None
    assert result.why


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("192.0.2.1", "IP address"),
        ("192.0.2.1%eth0", "IP address"),
        ("fe80::1%eth0", "IP address"),
        ("ipv6:2001:db8::1", "IP address"),
        ("[192.0.2.1]", "address literal"),
        ("[ipv6:fe80::1%eth0]:25", "address literal"),
        ("192.0.2.1.", "address literal"),
        ("192.0.2", "numeric top-level label"),
        ("192.0.2.example", None),  # digits and dots, but a name: looked up
    ],
)
def test_normalize_key_tells_addresses_from_names(key: str, why: str | None) -> None:
    result = normalize_key(key)
    assert result.why == (why or "")
    assert (result.domain is None) == (why is not None)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("a" * 64 + ".example", id="label-64"),
        pytest.param("[" + "a" * 64 + ".example]:25", id="bracketed-label-64"),
        pytest.param("x." + "a" * 200 + ".example", id="label-200"),
        pytest.param(".".join(["a" * 63] * 4) + ".ex", id="name-255"),
        pytest.param("b\u00fccher" + "a" * 60 + ".example", id="u-label-too-long"),
        pytest.param("\ufffd.example", id="replacement-char"),
        pytest.param("exa\x01mple.com", id="control-char"),
        pytest.param("exa\nmple.com", id="newline-inside"),
        pytest.param("\x00", id="nul"),
    ],
)
def test_normalize_key_names_that_cannot_exist_are_no_policy(key: str) -> None:
    # Never an exception (that used to close the connection): NOTFOUND without lookup.
    result = normalize_key(key)
    assert result.domain is None
    assert result.why
