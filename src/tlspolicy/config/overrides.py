"""Overrides: a domain, the Postfix level to answer, why, and until when; and the
``overrides:`` configuration section that keeps them in git with the rest.

The value is pure and dependency-free (the decision and the cache import it). The text
forms are what operators type: LEVEL is a Postfix level the map may answer (``none``,
``may``, ``encrypt``, ``secure`` with an optional ``match=``, ``dane``, ``dane-only``) or
``lookup`` (no override: look up as usual, e.g. to exempt one name below a
``--subdomains`` parent); UNTIL is a duration (``90m``, ``2h``, ``3d``, ``1w``) or an ISO
date/time (UTC unless it says otherwise). In the file::

    overrides:
      partner.example:
        level: may                 # or "secure match=mx.partner.example", dane, lookup, ...
        until: 2026-12-31          # optional: an ISO date/time (UTC); omitted: no expiry
        reason: certificate expired, ticket 4711
        subdomains: false

Durations are not accepted in the file (it is re-read on every reload; "7d" would never
expire). An ``until`` already past is kept (the server logs it once as expired).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from tlspolicy.config.checks import Section, boolean, domain_name, string
from tlspolicy.config.keydoc import described, key
from tlspolicy.errors import ConfigError

LEVELS = ("none", "may", "encrypt", "secure", "dane", "dane-only", "lookup")
LOOKUP = "lookup"
# Stored overrides stay this long after they expire, so that ``override list`` shows them
# and a server logs the expiry once instead of silently forgetting them.
OVERRIDE_RETAIN_S = 7 * 86400.0
MAX_REASON_CHARS = 200
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")


class OverrideError(ValueError):
    """A level, match list or expiry an operator typed is not usable; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class Override:
    """An operator's answer for ``domain`` (and names below it with ``subdomains``)."""

    domain: str
    level: str = described(
        "none, may, encrypt, secure (with match=), dane, dane-only, or lookup (no override)",
        example="secure",
    )
    match: str = key(
        "", "secure only: Postfix match list, ':'-separated", example="mx1.partner.example"
    )
    until: float | None = key(
        None, "an ISO date or date/time (UTC); not set: no expiry", example="2026-12-31"
    )
    reason: str = key("", "why; logged with every use", example="certificate expired, ticket 4711")
    subdomains: bool = key(False, "also the names below the domain")
    source: str = "cache"  # "cache" (tlspolicy override add) or "config" (overrides:)
    created_at: float = 0.0

    @property
    def postfix_level(self) -> str:
        """The policy text after ``OK `` (``secure match=a:b``)."""
        return f"secure match={self.match}" if self.match else self.level

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    def keep_until(self) -> float:
        """Until when a backend keeps it (some time past expiry, see ``OVERRIDE_RETAIN_S``)."""
        return math.inf if self.until is None else self.until + OVERRIDE_RETAIN_S

    def describe_until(self) -> str:
        if self.until is None:
            return "no expiry"
        return datetime.fromtimestamp(self.until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "level": self.level,
            "match": self.match,
            "until": self.until,
            "reason": self.reason,
            "subdomains": self.subdomains,
            "source": self.source,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Override:
        """Raises ``OverrideError`` (or KeyError/TypeError) on data that is not ours."""
        until = data.get("until")
        level, match = parse_level(str(data["level"]), str(data.get("match") or ""))
        return cls(
            domain=str(data["domain"]),
            level=level,
            match=match,
            until=None if until is None else float(until),
            reason=str(data.get("reason") or ""),
            subdomains=bool(data.get("subdomains", False)),
            source=str(data.get("source") or "cache"),
            created_at=float(data.get("created_at") or 0.0),
        )


def parse_level(level: str, match: str = "") -> tuple[str, str]:
    """``(level, match)`` from ``secure``/``--match a:b`` or ``secure match=a:b``."""
    words = level.split()
    if not words:
        raise OverrideError("level: empty (one of " + ", ".join(LEVELS) + ")")
    name, rest = words[0].lower(), words[1:]
    if name not in LEVELS:
        raise OverrideError(f"level {name!r}: must be one of {', '.join(LEVELS)}")
    for word in rest:
        if not word.startswith("match=") or name != "secure":
            raise OverrideError(f"level {level!r}: only 'secure match=...' takes an attribute")
        match = match or word.removeprefix("match=")
    if match and name != "secure":
        raise OverrideError(f"--match applies to the secure level only, not {name}")
    if any(c.isspace() or c in "{}" for c in match) or match.startswith(":"):
        raise OverrideError(f"match {match!r}: ':'-separated names, no spaces or braces")
    return name, match


def parse_until(text: str, now: float) -> float:
    """A duration from ``now`` or an ISO date/time; it must lie in the future."""
    found = _DURATION.match(text.strip().lower())
    if found:
        until = now + float(found.group(1)) * _UNITS[found.group(2)]
    else:
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise OverrideError(
                f"until {text!r}: a duration (30m, 12h, 7d, 2w) or an ISO date (2026-12-31)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        until = moment.timestamp()
    if until <= now:
        raise OverrideError(f"until {text!r}: lies in the past")
    return until


def clean_reason(text: str) -> str:
    """One line, bounded: it goes into log lines and the healthz detail."""
    return " ".join(text.split())[:MAX_REASON_CHARS]


def parse_overrides(data: Any) -> tuple[Override, ...]:
    if data is None:
        return ()
    if not isinstance(data, Mapping):
        raise ConfigError("overrides: must be a mapping of domain to override")
    found: dict[str, Override] = {}
    for name, body in data.items():
        domain = domain_name("overrides", name)
        key = f"overrides.{domain}"
        s = Section(body, key)
        try:
            level, match = parse_level(s.get("level", "", string), s.get("match", "", string))
        except OverrideError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        found[domain] = Override(
            domain=domain,
            level=level,
            match=match,
            until=s.get("until", None, _moment),
            reason=clean_reason(s.get("reason", "", lambda k, v: str(v))),
            subdomains=s.get("subdomains", False, boolean),
            source="config",
        )
        s.finish()
    return tuple(found[d] for d in sorted(found))


def _moment(key: str, value: Any) -> float:
    """YAML reads ``2026-12-31`` as a date and ``2026-12-31 18:00:00`` as a datetime."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    if isinstance(value, str):
        try:
            return _moment(key, datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            pass
    raise ConfigError(f"{key}: must be an ISO date or date/time (2026-12-31T18:00:00Z)")
