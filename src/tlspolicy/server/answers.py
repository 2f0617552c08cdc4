"""The socketmap edge: service outcomes become reply text, with the memo and the metrics.

``answer_now`` is the synchronous hot path: a memo hit (a reply made from cached data
alone that still holds) is answered without scheduling anything. ``answer`` asks the
service, formats its ``Outcome`` (``socketmap.answer.render``), counts it, and memoises it
when the plan said the decision holds for a while. This is the only place where answers
turn into wire text.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tlspolicy.config import MapProfile
from tlspolicy.memo import AnswerMemo, Memo
from tlspolicy.metrics import NULL_METRICS, MetricsSink
from tlspolicy.outcome import Outcome, Source
from tlspolicy.service import PolicyService
from tlspolicy.socketmap.answer import Reply, render

_OTHER_MAP = "other"  # the metric label of an unknown map (a client-chosen name is no label)


class Answerer:
    def __init__(
        self,
        service: PolicyService,
        *,
        metrics: MetricsSink = NULL_METRICS,
        clock: Callable[[], float] = time.time,
        memo: AnswerMemo | None = None,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.clock = clock
        self.memo = memo or AnswerMemo()
        service.on_stored.append(self.memo.forget)

    def answer_now(self, name: str, key: str) -> str | None:
        """The memoised reply for this request, if one still holds; no I/O, no await."""
        now = self.clock()
        memo = self.memo.get((name, key), now)
        if memo is None:
            return None
        self.service.cache.note_use(memo.domain, now)
        self.metrics.cache("hot", True)
        self.metrics.query(name, memo.kind)
        return memo.reply

    async def answer(self, name: str, key: str) -> str:
        """The reply payload for one request. Raises only ``ProtocolError`` (framing)."""
        outcome = await self.service.answer(name, key)
        reply = self.format(name, outcome)
        if outcome.source is Source.UNKNOWN_MAP:
            self.metrics.query(_OTHER_MAP, reply.kind)
            return reply.text
        if outcome.source in (Source.CACHE, Source.LIVE):
            self.metrics.cache("hot", outcome.source is Source.CACHE)
        if (
            outcome.source is Source.CACHE
            and outcome.domain is not None
            and outcome.reusable_until > self.clock()
        ):
            memo = Memo(reply.text, reply.kind, outcome.domain, outcome.reusable_until)
            self.memo.put((name, key), memo)
        self.metrics.query(name, reply.kind)
        return reply.text

    def format(self, name: str, outcome: Outcome) -> Reply:
        return render(outcome.decision, self.service.config.profile(name) or MapProfile())
