"""Defaults and limits that more than one module needs: the one place they are written.

Pure constants, importable from anywhere (no imports of its own), so the configuration's
defaults, the protocol code's keyword defaults and the checks all agree.
"""

from __future__ import annotations

# DANE cache lifetimes in seconds (as in postfix-tlspol, peers.md Appendix A §1.5).
DANE_MIN_TTL_S = 180
DANE_MAX_TTL_S = 86_400
DANE_NEGATIVE_TTL_S = 1_800  # "none" verdicts whose answers carried no TTL

# DNS: EDNS0 UDP payload size (the DNS flag day 2020 value) and MX hosts examined at once.
DNS_UDP_SIZE = 1232
DNS_CONCURRENCY = 4

# MTA-STS (RFC 8461 §3.3): at least five minutes between fetches of an id that failed, and
# "a suggested timeout of one minute" for the whole fetch.
FETCH_BACKOFF_S = 300.0
MAX_FETCH_TIMEOUT_S = 60.0
HTTPS_PORT = 443  # RFC 8461 §3.3 policy URLs, RFC 8460 rua URLs without a port
