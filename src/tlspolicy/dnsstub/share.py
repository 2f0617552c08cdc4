"""A ``DnsClient`` wrapper that never asks the same question twice at once, nor again soon.

Why: a resolution asks up to a dozen questions, and many domains share their MX hosts (a
mail provider's hosts serve thousands of domains, so a newsletter run asks for their A and
TLSA records once per domain). Each question costs this process a query to build, a
response to parse and a conversion, about as much CPU as the rest of the lookup together.

* In flight: callers asking (name, type) while a query for it is out await that query and
  get its answer or its ``DnsError``. The first asker runs the query itself, in its own
  task (a task per question cost more than the query's own Python work); should it be
  cancelled while others wait, a task asks again for them.
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

from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.dnsstub.data import DnsAnswer
from tlspolicy.dnsstub.trace import current as current_trace

REUSE_S = 0.0  # seconds; see the module docstring
MAX_ANSWERS = 4096

Key = tuple[str, str]


class _Flight:
    """A question in flight: the future its sharers await, and how many joined it."""

    __slots__ = ("future", "sharers")

    def __init__(self, future: asyncio.Future[DnsAnswer]) -> None:
        self.future = future
        self.sharers = 0


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
        self._flights: dict[Key, _Flight] = {}
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
        if flight is not None:
            self.shared += 1
            flight.sharers += 1
            return await asyncio.shield(flight.future)  # a sharer that gives up fails no one
        flight = self._flights[key] = _Flight(asyncio.get_running_loop().create_future())
        self.asked += 1
        try:
            answer = await self.inner.query(name, rdtype)
        except asyncio.CancelledError:
            if flight.sharers:  # they still wait: ask again for them, in a task of its own
                self.asked += 1
                again = asyncio.ensure_future(self._ask(key, flight, name, rdtype))
                again.add_done_callback(_retrieve)
            else:
                self._land(key, flight)
            raise
        except BaseException as exc:
            self._land(key, flight, error=exc)
            raise
        self._land(key, flight, answer)
        return answer

    async def _ask(self, key: Key, flight: _Flight, name: str, rdtype: str) -> DnsAnswer:
        """The question of a cancelled first asker, asked again for its sharers."""
        try:
            answer = await self.inner.query(name, rdtype)
        except BaseException as exc:
            self._land(key, flight, error=exc)
            raise
        self._land(key, flight, answer)
        return answer

    def _land(self, key: Key, flight: _Flight, answer: DnsAnswer | None = None, *,
              error: BaseException | None = None) -> None:  # fmt: skip
        """End ``flight``: its sharers get ``answer`` or ``error``; an answer is kept."""
        if self._flights.get(key) is flight:
            del self._flights[key]
        if answer is not None:
            self._keep(key, answer)
        if not flight.sharers or flight.future.done():
            return
        if answer is not None:
            flight.future.set_result(answer)
            return
        flight.future.add_done_callback(_retrieve)  # every sharer may have given up
        if error is None or isinstance(error, asyncio.CancelledError):
            flight.future.cancel()
        else:
            flight.future.set_exception(error)

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


def _retrieve(done: asyncio.Future[DnsAnswer]) -> None:
    """Mark a failure as seen: when every asker gave up, nobody else will look at it."""
    if not done.cancelled():
        done.exception()
