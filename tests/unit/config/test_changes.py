"""What a reload compares: changed keys by their dotted names."""

from __future__ import annotations

from tlspolicy.config import parse_config
from tlspolicy.config.changes import changed_keys


def test_changed_keys_by_dotted_name_in_schema_order() -> None:
    old = parse_config({})
    new = parse_config(
        {
            "dns": {"nameservers": ["127.0.0.1:1"], "selfcheck_secure_name": "example.org"},
            "mta_sts": {"allow_private_addresses": True},
            "maps": {"QUERY": {"tlsrpt": True}},
            "overrides": {"a.example": {"level": "may"}},
        }
    )
    assert changed_keys(old, new) == [
        "dns.nameservers",
        "dns.selfcheck_secure_name",
        "mta_sts.allow_private_addresses",
        "maps",
        "overrides",
    ]
    assert changed_keys(old, parse_config({})) == []
