"""A ``DnsClient`` wrapper that never asks the same question twice at once, nor again soon.

Why: a resolution asks up to a dozen questions, and many domains share their MX hosts (a
mail provider's hosts serve thousands of domains, so a newsletter run asks for their A and
TLSA records once per domain). Each question costs this process a query to build, a
response to parse and a conversion, about as much CPU as the rest of the lookup together.

* In flight: callers asking (name, type) while a query for it is out await that query and
  get its answer or its ``DnsError``.
* Answered (off by default, ``reuse_s``): a ``DnsAnswer`` may be reused for ``min(its TTL,
  reuse_s)`` seconds. Off because a re-check must see the resolver's current data: an
  MTA-STS id re-check (``mta_sts.recheck_interval``, down to 1 s) right after a lookup would
  otherwise get the old TXT record. Failures are never kept.
* Bounded: at most ``MAX_ANSWERS`` answers are kept (oldest dropped first).
* While a trace is recorded (``tlspolicy query``), every question goes to the resolver, so
  the explanation shows each query with its own timing.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from tlspolicy.dnsclient import DnsClient
from tlspolicy.dnsdata import DnsAnswer
from tlspolicy.trace import current as current_trace

REUSE_S = 0.0  # seconds; see the module docstring
MAX_ANSWERS = 4096

Key = tuple[str, str]


class SharedAnswers:
    """``DnsClient``: ``inner`` asked at most once per (name, type) in flight or recently."""

    def __init__(
        self,
        inner: DnsClient,
        *,
        reuse_s: float = REUSE_S,
        max_answers: int = MAX_ANSWERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.reuse_s = reuse_s
        self.max_answers = max_answers
        self.clock = clock
        self._answers: OrderedDict[Key, tuple[float, DnsAnswer]] = OrderedDict()
        self._flights: dict[Key, asyncio.Task[DnsAnswer]] = {}
        self.asked = 0  # questions sent to ``inner``
        self.shared = 0  # questions answered without it

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        if current_trace() is not None:
            return await self.inner.query(name, rdtype)
        key = (name.lower().removesuffix("."), rdtype)
        kept = self._answers.get(key)
        if kept is not None:
            if kept[0] > self.clock():
                self.shared += 1
                return kept[1]
            del self._answers[key]
        flight = self._flights.get(key)
        if flight is None:
            # Its own task: an asker that gives up (cancelled) does not fail the others.
            flight = asyncio.ensure_future(self._ask(key, name, rdtype))
            flight.add_done_callback(_retrieve)
            self._flights[key] = flight
            self.asked += 1
        else:
            self.shared += 1
        return await asyncio.shield(flight)

    async def _ask(self, key: Key, name: str, rdtype: str) -> DnsAnswer:
        try:
            answer = await self.inner.query(name, rdtype)
        finally:
            self._flights.pop(key, None)
        self._keep(key, answer)
        return answer

    def _keep(self, key: Key, answer: DnsAnswer) -> None:
        lifetime = min(float(answer.ttl), self.reuse_s)
        if lifetime <= 0:
            return
        self._answers[key] = (self.clock() + lifetime, answer)
        self._answers.move_to_end(key)
        while len(self._answers) > self.max_answers:
            self._answers.popitem(last=False)

    async def aclose(self) -> None:
        self._answers.clear()
        await self.inner.aclose()


def _retrieve(flight: asyncio.Future[DnsAnswer]) -> None:
    """Mark a failure as seen: when every asker gave up, nobody else will look at it."""
    if not flight.cancelled():
        flight.exception()
