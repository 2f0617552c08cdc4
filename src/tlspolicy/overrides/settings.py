"""The ``overrides:`` configuration section: overrides kept in git with the rest.

    overrides:
      partner.example:
        level: may                 # or "secure match=mx.partner.example", dane, lookup, ...
        until: 2026-12-31          # optional: an ISO date/time (UTC); omitted: no expiry
        reason: certificate expired, ticket 4711
        subdomains: false

Durations are not accepted here (the file is re-read on every reload; "7d" would never
expire). An ``until`` already past is kept (the server logs it once as expired).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from tlspolicy.configcheck import Section, boolean, domain_name, string
from tlspolicy.errors import ConfigError
from tlspolicy.overrides.model import Override, OverrideError, clean_reason, parse_level


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
