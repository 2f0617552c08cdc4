"""Defaults and limits that more than one module needs: the one place they are written.

Pure constants, importable from anywhere (no imports of its own), so the configuration's
defaults, the protocol code's keyword defaults and the checks all agree.
"""

from __future__ import annotations

# DANE cache lifetimes in seconds: the floor and the negative lifetime are postfix-tlspol's
# (docs/protocol-notes.md §7.2); the ceiling is one day instead of its 30 days.
DANE_MIN_TTL_S = 180
DANE_MAX_TTL_S = 86_400
DANE_NEGATIVE_TTL_S = 1_800  # "none" verdicts whose answers carried no TTL

# DNS: EDNS0 UDP payload size (the DNS flag day 2020 value) and MX hosts examined at once
# (both postfix-tlspol's values, docs/protocol-notes.md §7.1 and §7.3).
DNS_UDP_SIZE = 1232
DNS_CONCURRENCY = 4

# MTA-STS (RFC 8461 §3.3): at least five minutes between fetches of an id that failed, and
# "a suggested timeout of one minute" for the whole fetch.
FETCH_BACKOFF_S = 300.0
MAX_FETCH_TIMEOUT_S = 60.0
HTTPS_PORT = 443  # RFC 8461 §3.3 policy URLs, RFC 8460 rua URLs without a port
