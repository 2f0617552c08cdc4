"""MTA-STS (RFC 8461): discovery, fetch, strict parsing and the cache rules of §3.3/§5.1."""
