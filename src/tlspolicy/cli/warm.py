"""``tlspolicy cache warm``: resolve domains ahead of first contact, into the shared cache.

Two sources, one runner and one summary: a list of domains (``warm FILE``) or the
recipient domains of recent deliveries in Postfix logs (``warm --from-maillog FILE...``,
``maillog``). The command is its own process with its own cache connection, so the running
server keeps answering from its hot layer meanwhile; lookups start at most ``rate`` per
second (at most ``WARM_CONCURRENCY`` at once), so the resolver and the policy hosts are not
flooded. One line per domain goes to stdout; the progress bar (on a terminal) and the
summary go to stderr.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from tlspolicy.config import MapProfile
from tlspolicy.decision.verdict import Verdict
from tlspolicy.socketmap.answer import render
from tlspolicy.socketmap.keys import normalize_key

WARM_CONCURRENCY = 16
DEFAULT_RATE = 20.0  # lookups started per second
_BAR = 30


@dataclass
class WarmSummary:
    resolved: int = 0
    dane: int = 0
    mta_sts: int = 0
    failed: int = 0
    skipped: int = 0

    def count(self, verdict: Verdict) -> None:
        if verdict in (Verdict.TEMP, Verdict.PERM):
            self.failed += 1
            return
        self.resolved += 1
        if verdict in (Verdict.DANE, Verdict.DANE_ONLY):
            self.dane += 1
        elif verdict is Verdict.SECURE:
            self.mta_sts += 1

    def line(self) -> str:
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        return (
            f"warmed: {self.resolved} resolved ({self.dane} DANE, {self.mta_sts} MTA-STS, "
            f"{self.resolved - self.dane - self.mta_sts} no policy), {self.failed} failed{skipped}"
        )


class Progress:
    """A one-line bar on a terminal; nothing otherwise (logs and pipes stay clean)."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.enabled = stream.isatty() and total > 0

    def step(self) -> None:
        self.done += 1
        if self.enabled:
            filled = _BAR * self.done // self.total
            bar = "#" * filled + "." * (_BAR - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total}")
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()


async def warm(
    service: Any,
    profile: MapProfile,
    names: Sequence[str],
    *,
    rate: float = DEFAULT_RATE,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    limit_s: float = 30.0,
) -> WarmSummary:
    """Resolve ``names`` (``service.resolve``: the server's code, stored in the cache)."""
    summary = WarmSummary()
    domains: list[str] = []
    for name in names:
        parsed = normalize_key(name)
        if parsed.domain is None:
            print(f"{name}: skipped ({parsed.why})", file=out)
            summary.skipped += 1
        elif parsed.domain not in domains:
            domains.append(parsed.domain)
    progress = Progress(len(domains), err)
    slots = asyncio.Semaphore(WARM_CONCURRENCY)
    started = time.monotonic()
    interval = 1.0 / rate if rate > 0 else 0.0

    async def one(index: int, domain: str) -> None:
        await asyncio.sleep(max(0.0, started + index * interval - time.monotonic()))
        async with slots:
            try:
                async with asyncio.timeout(limit_s):
                    resolution = await service.resolve(domain, profile)
            except Exception as exc:  # one domain's failure must not end the run
                summary.failed += 1
                print(f"{domain}: failed ({type(exc).__name__}: {exc})", file=out)
            else:
                summary.count(resolution.decision.verdict)
                print(f"{domain}: {render(resolution.decision, profile).text}", file=out)
            progress.step()

    await asyncio.gather(*(one(i, d) for i, d in enumerate(domains)))
    print(summary.line(), file=err)
    return summary
