"""The tlsrpt: configuration section."""

from __future__ import annotations

import pytest

from tlspolicy.config import parse_config
from tlspolicy.errors import ConfigError


def test_settings_defaults_are_off_and_store_next_to_cache() -> None:
    cfg = parse_config({"cache": {"path": "/var/lib/x/cache.sqlite3"}}).tlsrpt
    assert cfg.collector_socket is None and not cfg.reporter
    assert cfg.store_backend == "sqlite" and cfg.store_path == "/var/lib/x/tlsrpt.sqlite3"
    assert cfg.socket_mode == 0o660


def test_settings_full_section() -> None:
    cfg = parse_config(
        {
            "tlsrpt": {
                "collector_socket": "/var/spool/postfix/run/tlsrpt/tlsrpt.sock",
                "socket_mode": "0620",
                "socket_group": "postfix",
                "store": {"backend": "postgres", "url": "postgresql://u@db/tlsrpt"},
                "reporter": True,
                "submitter": "MX.Example.NET.",
                "suppress": ["example.org"],
                "delay": 0,
                "only_with_failures": True,
            }
        }
    ).tlsrpt
    assert cfg.socket_mode == 0o620 and cfg.store_url == "postgresql://u@db/tlsrpt"
    assert cfg.submitter == "mx.example.net"
    assert cfg.contact == "postmaster@mx.example.net"
    assert cfg.from_address == "noreply-tlsrpt@mx.example.net"
    assert cfg.suppressed("example.org") and cfg.suppressed("a.example.org")
    assert not cfg.suppressed("badexample.org")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"bogus": 1}, "tlsrpt.bogus: unknown key"),
        ({"collector_socket": "run/t.sock"}, "tlsrpt.collector_socket: must be an absolute"),
        ({"reporter": True}, "tlsrpt.submitter: required"),
        ({"store": {"backend": "postgres"}}, "tlsrpt.store.url: required"),
        ({"store": {"backend": "redis"}}, "tlsrpt.store.backend: must be one of"),
        ({"store": {"nope": 1}}, "tlsrpt.store.nope: unknown key"),
        ({"smtp_port": 70000}, "tlsrpt.smtp_port"),
        ({"delay": -1}, "tlsrpt.delay"),
        ({"retry_min": 9000, "retry_max": 60}, "tlsrpt.retry_min"),
        ({"dkim_key": "/nonexistent/key.pem"}, "tlsrpt.dkim_key: cannot read"),
        ({"keep_days": 1}, "tlsrpt.keep_days"),
    ],
)  # fmt: skip
def test_settings_errors_name_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_config({"tlsrpt": section})
