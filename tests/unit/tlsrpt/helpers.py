"""Datagrams as libtlsrpt writes them, for the TLSRPT tests."""

from __future__ import annotations

import json
from typing import Any

RECORD = "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"


def sts_policy(
    *, failed: bool = False, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "policy-type": 2,
        "policy-domain": "example.com",
        "policy-string": [
            "version: STSv1",
            "mode: enforce",
            "mx: mx.example.com",
            "max_age: 86400",
        ],
        "mx-host": ["mx.example.com"],
        "t": len(details or []),
        "f": 1 if failed else 0,
    }
    if details:
        policy["failure-details"] = details
    return policy


def datagram(*policies: dict[str, Any], domain: str = "example.com", record: str = RECORD) -> bytes:
    """The bytes of one datagram, in libtlsrpt's key order."""
    body = {"dpv": "1", "d": domain, "pr": record, "policies": list(policies)}
    return json.dumps(body, separators=(",", ":")).encode()


NO_POLICY_OK = {"policy-type": 9, "t": 0, "f": 0}
MISMATCH = {"c": 202, "s": "192.0.2.1", "n": "mx.example.com", "r": "198.51.100.7"}
