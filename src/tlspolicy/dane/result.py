"""The outcome of DANE discovery for one domain, as a cacheable value."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class DaneLevel(StrEnum):
    DANE_ONLY = "dane-only"  # secure MX RRset, every MX host has secure, usable TLSA
    DANE = "dane"  # at least one host has secure TLSA, but dane-only does not hold
    NONE = "none"  # DANE does not apply: MTA-STS decides
    TEMP = "temp"  # a lookup failure prevents knowing: defer (never fall back)


@dataclass(frozen=True, slots=True)
class HostResult:
    """What was found for one MX host (for explanations; not used to decide twice)."""

    host: str
    # "secure" | "insecure" | "none" (no address) | "error" | "invalid" (not a host name)
    address_status: str
    tlsa_name: str = ""  # the TLSA owner name used ("" when no TLSA lookup was made)
    tlsa_status: str = ""  # "secure" | "insecure" | "none" | "error" | ""
    usable: int = 0  # usable TLSA records
    unusable: int = 0  # secure but unusable TLSA records
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "address_status": self.address_status,
            "tlsa_name": self.tlsa_name,
            "tlsa_status": self.tlsa_status,
            "usable": self.usable,
            "unusable": self.unusable,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostResult:
        return cls(
            host=str(data["host"]),
            # The same few words in every cached domain: one copy each (interned).
            address_status=sys.intern(str(data["address_status"])),
            tlsa_name=str(data.get("tlsa_name", "")),
            tlsa_status=sys.intern(str(data.get("tlsa_status", ""))),
            usable=int(data.get("usable", 0)),
            unusable=int(data.get("unusable", 0)),
            detail=sys.intern(str(data.get("detail", ""))),
        )


@dataclass(frozen=True, slots=True)
class DaneResult:
    """DANE verdict for a domain.

    Attributes:
        level: the verdict.
        reason: short human text; for TEMP it becomes the ``TEMP <reason>`` reply.
        ttl: seconds this verdict may be cached (already clamped); 0 for TEMP.
        mx_secure: the MX RRset (or implicit-MX proof) validated; None when unknown.
        hosts: per-host findings, in MX preference order.
    """

    level: DaneLevel
    reason: str
    ttl: int
    mx_secure: bool | None = None
    hosts: tuple[HostResult, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level.value,
            "reason": self.reason,
            "ttl": self.ttl,
            "mx_secure": self.mx_secure,
            "hosts": [h.to_json() for h in self.hosts],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DaneResult:
        mx_secure = data.get("mx_secure")
        return cls(
            level=DaneLevel(data["level"]),
            reason=sys.intern(str(data["reason"])),
            ttl=int(data["ttl"]),
            mx_secure=None if mx_secure is None else bool(mx_secure),
            hosts=tuple(HostResult.from_json(h) for h in data.get("hosts", [])),
        )
