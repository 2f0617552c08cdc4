"""Which configuration keys differ between two configurations (for a reload).

``changed_keys`` compares section by section, key by key, and names each difference by its
dotted key (``dns.nameservers``); ``maps`` and ``overrides`` are each one key. What a
reload can apply live and what needs a restart is the server's knowledge
(``server.lifecycle``); this module only tells what changed.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

from tlspolicy.config.schema import Config

NOT_KEYS = frozenset({"source", "origin"})  # where the file came from, not a setting
WHOLE_KEYS = frozenset({"maps", "overrides"})  # compared as one value


def changed_keys(old: Config, new: Config) -> list[str]:
    """The dotted keys whose values differ, in schema order."""
    changed: list[str] = []
    for item in fields(old):
        name = item.name
        if name in NOT_KEYS:
            continue
        before, after = getattr(old, name), getattr(new, name)
        if name in WHOLE_KEYS or not is_dataclass(before):
            if _plain(before) != _plain(after):
                changed.append(name)
            continue
        for key in fields(before):
            if getattr(before, key.name) != getattr(after, key.name):
                changed.append(f"{name}.{key.name}")
    return changed


def _plain(value: Any) -> Any:
    return dict(value) if hasattr(value, "items") else value
