"""What a reload applies live, and what waits for a restart."""

from __future__ import annotations

from tlspolicy.server.lifecycle import live_key


def test_live_keys_and_keys_that_need_a_restart() -> None:
    for key in ("maps", "overrides", "mta_sts.allow_private_addresses", "dane.max_ttl",
                "dns.selfcheck_bogus_name", "server.log_level"):  # fmt: skip
        assert live_key(key), key
    for key in ("dns.nameservers", "dns.selfcheck", "server.listen", "server.user",
                "cache.backend", "tlsrpt.reporter", "cache.hot_ttl"):  # fmt: skip
        assert not live_key(key), key
