"""A synthetic path to a large cache: clones of real entries, written through the backend API.

Looking up 100,000 domains through the server costs minutes of CPU, so the memory scenario
writes the cache file itself: a server first answers a few real benchmark domains (a DANE
domain and an MTA-STS domain), those entries are read back, and each clone gets a new
domain name and timestamps moved to "now", exactly as the service would have stored it
(``CacheEntry.to_json``/``from_json``, ``CacheBackend.put``). The server is then started on
that file and asked for every cloned name, which loads each entry into its in-process hot
layer: the RSS it then has is that of a server holding that many real policies.
"""

from __future__ import annotations

import asyncio
import copy
import time
from pathlib import Path
from typing import Any

from tlspolicy.cache.entry import CacheEntry
from tlspolicy.cache.factory import open_backend
from tlspolicy.config import CacheConfig

PIPELINE = 256  # puts queued at once (the sqlite backend runs them in one worker thread)
# Timestamp fields of CacheEntry.to_json (and its branches) that move with the clone.
TIME_KEYS = frozenset(
    {"checked_at", "expires_at", "fetched_at", "negative_until", "error_at", "fetch_failed_at"}
)


def _shift_times(data: Any, delta: float) -> Any:
    if isinstance(data, dict):
        return {
            k: (v + delta if k in TIME_KEYS and isinstance(v, float | int) and v else
                _shift_times(v, delta))
            for k, v in data.items()
        }  # fmt: skip
    if isinstance(data, list):
        return [_shift_times(v, delta) for v in data]
    return data


def _reference_time(data: dict[str, Any]) -> float:
    """When the template was looked up (its latest check)."""
    times = [
        float(branch["checked_at"])
        for branch in (data.get("dane"), data.get("sts"))
        if isinstance(branch, dict) and branch.get("checked_at")
    ]
    if not times:
        raise ValueError(f"template {data.get('domain')} has no checked_at")
    return max(times)


async def _read(path: Path, domains: list[str]) -> list[dict[str, Any]]:
    backend = open_backend(CacheConfig(backend="sqlite", path=str(path)), recover=False)
    await backend.open()
    try:
        found = [await backend.get(domain) for domain in domains]
    finally:
        await backend.aclose()
    missing = [d for d, e in zip(domains, found, strict=True) if e is None]
    if missing:
        raise RuntimeError(f"template domains not in {path}: {missing}")
    return [e.to_json() for e in found if e is not None]


async def _write(path: Path, templates: list[dict[str, Any]], names: list[str]) -> None:
    config = CacheConfig(backend="sqlite", path=str(path), max_entries=2 * len(names) + 1000)
    backend = open_backend(config)
    await backend.open()
    now = time.time()
    try:
        shifted = [_shift_times(t, now - _reference_time(t)) for t in templates]
        for start in range(0, len(names), PIPELINE):
            batch = []
            for i, name in enumerate(names[start : start + PIPELINE], start):
                data = copy.deepcopy(shifted[i % len(shifted)])
                data["domain"] = name
                data["used_at"], data["hits"] = now, 0
                batch.append(backend.put(CacheEntry.from_json(data)))
            await asyncio.gather(*batch)
    finally:
        await backend.aclose()


def read_templates(path: Path, domains: list[str]) -> list[dict[str, Any]]:
    """The stored entries of ``domains`` in the sqlite cache ``path`` (server stopped)."""
    return asyncio.run(_read(path, domains))


def write_clones(path: Path, templates: list[dict[str, Any]], names: list[str]) -> None:
    """A new sqlite cache at ``path`` with one clone per name, templates taken in turn."""
    asyncio.run(_write(path, templates, names))
