"""The tlsrpt: configuration section."""

from __future__ import annotations

from pathlib import Path

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
        ({"reporter": True}, "tlsrpt.contact_info: required"),
        ({"contact_info": "TLS team <tls@example.net>"}, "tlsrpt.contact_info: must be a plain"),
        ({"contact_info": "tls@[127.0.0.1]"}, "tlsrpt.contact_info: must be a plain"),
        ({"sender": "root"}, "tlsrpt.sender: must be a plain"),
        ({"submitter": "mx.example.net", "contact_info": "postmaster@example.net"},
         "tlsrpt.submitter: mx.example.net is not the domain of tlsrpt.contact_info"),
        ({"https_ports": [443, 70000]}, "tlsrpt.https_ports"),
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


def test_settings_submitter_is_the_domain_of_contact_info() -> None:
    """RFC 8460 §5.3: TLS-Report-Submitter matches the domain of contact-info."""
    cfg = parse_config({"tlsrpt": {"reporter": True, "contact_info": "TLSRPT@Example.NET"}}).tlsrpt
    assert cfg.submitter == "example.net" and cfg.contact == "TLSRPT@Example.NET"
    same = parse_config(
        {"tlsrpt": {"submitter": "example.net", "contact_info": "tlsrpt@example.net"}}
    ).tlsrpt
    assert same.submitter == "example.net"


def test_settings_unsigned_mail_reports_are_warned_about(tmp_path: Path) -> None:
    cfg = parse_config({"tlsrpt": {"reporter": True, "contact_info": "t@example.net"}}).tlsrpt
    assert cfg.unsigned_mail is not None and "MUST ignore" in cfg.unsigned_mail
    assert "tlsrpt.dkim_key" in cfg.unsigned_mail
    key = tmp_path / "dkim.pem"
    key.write_text("not checked here")
    signed = {"reporter": True, "contact_info": "t@example.net", "dkim_key": str(key)}
    assert parse_config({"tlsrpt": signed}).tlsrpt.unsigned_mail is None
    https_only = {"reporter": True, "contact_info": "t@example.net", "mail_reports": False}
    assert parse_config({"tlsrpt": https_only}).tlsrpt.unsigned_mail is None
    assert parse_config({"tlsrpt": https_only}).tlsrpt.https_ports == (443,)
