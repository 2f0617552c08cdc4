"""The socketmap edge: service outcomes become reply text, with the memo and the metrics.

``answer_wire`` is the synchronous hot path: a memo hit (a reply made from cached data
alone that still holds) found by the request's raw netstring is answered with the reply's
netstring, without parsing, decoding or encoding; ``answer_now`` does the same for a
parsed request. ``answer`` asks the
service, formats its ``Outcome`` (``socketmap.answer.render``), counts it, and memoises it
when the plan said the decision holds for a while (or an override holds: never past
its expiry). This is the only place where answers turn into wire text.

Shadow profiles (``maps.NAME.shadow``) decide as usual, log and count what they would have
sent (``tlspolicy_shadow_answers_total``), and send ``NOTFOUND `` (``socketmap.answer.
shadowed``), so Postfix applies main.cf.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from tlspolicy.config import MapProfile
from tlspolicy.decision.outcome import Outcome, Source
from tlspolicy.metrics.sink import NULL_METRICS, MetricsSink, NullMetrics
from tlspolicy.service.memo import AnswerMemo, Memo
from tlspolicy.service.service import PolicyService
from tlspolicy.socketmap.answer import Reply, render, shadowed
from tlspolicy.socketmap.connection import LocalProtocolError, encode_reply

log = logging.getLogger("tlspolicy.server")
_MEMOISED = (Source.CACHE, Source.OVERRIDE)
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
        self.memo = memo or AnswerMemo(trusted_until=service.cache.trusted_until)
        self._counting = type(metrics) is not NullMetrics  # exactly the sink that drops all
        self._note_use = service.cache.note_use  # bound once: every hot answer calls it
        service.on_stored.append(self.memo.forget)

    def answer_now(self, name: str, key: str) -> str | None:
        """The memoised reply for this request, if one still holds; no I/O, no await."""
        now = self.clock()
        memo = self.memo.get((name, key), now)
        if memo is None:
            return None
        self._count_hit(name, memo, now)
        return memo.reply

    def answer_wire(self, request: bytes) -> bytes | None:
        """The memoised reply netstring for a request netstring, if one still holds."""
        now = self.clock()
        memo = self.memo.get_wire(request, now)
        if memo is None:
            return None
        self._note_use(memo.domain, now)  # _count_hit, inline: every hot answer runs this
        if self._counting:
            self._count_metrics(memo.map_name, memo)
        return memo.wire

    def _count_hit(self, name: str, memo: Memo, now: float) -> None:
        self._note_use(memo.domain, now)
        if self._counting:  # NullMetrics (no metrics_listen) counts nothing: skip the calls
            self._count_metrics(name, memo)

    def _count_metrics(self, name: str, memo: Memo) -> None:
        self.metrics.cache("hot", True)
        if memo.shadow_kind:
            self.metrics.shadow(memo.shadow_kind)
        if memo.override:
            self.metrics.override("active")  # counted like the answer it repeats
        self.metrics.query(name, memo.kind)

    async def answer(self, name: str, key: str) -> str:
        """The reply payload for one request (framing errors never reach here)."""
        outcome = await self.service.answer(name, key)
        decided = self.format(name, outcome)
        if outcome.source is Source.UNKNOWN_MAP:
            self.metrics.query(_OTHER_MAP, decided.kind)
            return decided.text
        reply, shadow_kind = self.shadow(name, key, decided)
        if outcome.source in (Source.CACHE, Source.LIVE):
            self.metrics.cache("hot", outcome.source is Source.CACHE)
        if (
            outcome.source in _MEMOISED
            and outcome.domain is not None
            and outcome.reusable_until > self.clock()
        ):
            memo = Memo(reply.text, reply.kind, outcome.domain, outcome.reusable_until)
            memo.shadow_kind = shadow_kind
            memo.override = outcome.source is Source.OVERRIDE
            memo.map_name = sys.intern(name)  # a configured map's name: one copy
            memo.wire = _framed(reply.text)
            if outcome.source is Source.CACHE:
                memo.holds_until = outcome.holds_until
                memo.basis = self.service.cache.loaded_at(outcome.domain)
                # No longer than the copy it came from is trusted (cache.quiet): a change
                # made elsewhere is then seen within hot_ttl, memo or not.
                memo.until = min(memo.until, self.service.cache.trusted_until(memo.basis))
            self.memo.put((name, key), memo)
        self.metrics.query(name, reply.kind)
        return reply.text

    def shadow(self, name: str, key: str, decided: Reply) -> tuple[Reply, str]:
        """The reply to send, and (shadow maps) the kind that would have been sent."""
        profile = self.service.config.profile(name) or MapProfile()
        reply = shadowed(decided, profile)
        if reply is decided:
            return reply, ""
        self.metrics.shadow(decided.kind)
        log.info("shadow %s %s: would answer %s", name, key, decided.text.rstrip())
        return reply, decided.kind

    def format(self, name: str, outcome: Outcome) -> Reply:
        return render(outcome.decision, self.service.config.profile(name) or MapProfile())


def _framed(text: str) -> bytes:
    """The reply netstring, or b"" (no wire memo) when it cannot be sent as it is: the
    connection's encoder then says why, as for any other reply."""
    try:
        return encode_reply(text)
    except LocalProtocolError:
        return b""
