"""Listener and nameserver addresses in the configuration."""

from __future__ import annotations

from typing import Any

import pytest

from tlspolicy.config.addresses import parse_listen, parse_nameserver
from tlspolicy.config.schema import ListenAddress, ListenKind
from tlspolicy.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:8642", ListenAddress(ListenKind.TCP, "127.0.0.1", 8642)),
        ("[::1]:25", ListenAddress(ListenKind.TCP, "::1", 25)),
        (":8642", ListenAddress(ListenKind.TCP, "0.0.0.0", 8642)),
        ("unix:/run/x.sock", ListenAddress(ListenKind.UNIX, path="/run/x.sock")),
        ("/run/y.sock", ListenAddress(ListenKind.UNIX, path="/run/y.sock")),
    ],
)
def test_parse_listen(text: str, address: ListenAddress) -> None:
    assert parse_listen("k", text) == address


@pytest.mark.parametrize("text", ["", "unix:relative", "[::1]25", "host:25", "1.2.3.4:0", 7])
def test_parse_listen_rejects(text: Any) -> None:
    with pytest.raises(ConfigError, match=r"^k: "):
        parse_listen("k", text)


@pytest.mark.parametrize(
    ("text", "server"),
    [("127.0.0.1", ("127.0.0.1", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)),
     ("::1", ("::1", 53)), ("[::1]:54", ("::1", 54))],
)  # fmt: skip
def test_parse_nameserver(text: str, server: tuple[str, int]) -> None:
    assert parse_nameserver("k", text) == server
