"""The answer memo: replies made from cached data alone, reusable until that data changes.

The hot path of a busy MTA asks the same few thousand keys again and again; a memo hit
answers without scheduling anything. A memo holds no longer than the plan said its
decision holds (``CachePlan.reusable_until``: DANE refresh window or expiry, MTA-STS
re-check, policy expiry, negative caching, and at most ``cache.hot_ttl``), and storing a
new result for a domain drops that domain's memos. A memo that reaches its ``hot_ttl``
bound is extended, up to ``holds_until``, while the cache vouches that the data it was
made from (read at ``basis``) is unchanged (``trusted_until``, ``cache.quiet``): so a quiet
cache does not re-make every answer every ``hot_ttl``. Bounded: when full it is emptied (the
next queries re-make what is used), and the per-domain index only holds live memos, so
neither map can grow past ``max_entries`` however many distinct keys pass through.

A memo also keeps its request and reply as framed on the wire, so the server answers a
repeated request by its raw bytes (``get_wire``) without parsing, decoding or encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tlspolicy.socketmap.connection import netstring

# Answers memoised for the synchronous fast path; emptied when full.
MAX_MEMO_ENTRIES = 20_000

MemoKey = tuple[str, str]  # (map name, request key as sent)


@dataclass(slots=True)
class Memo:
    """One reusable reply. It is held once: ``put`` empties ``text`` when ``wire`` holds the
    same reply framed (every cached domain has a memo, so a second copy costs memory)."""

    text: str  # the reply (emptied by ``put`` when ``wire`` is set; read ``reply``)
    kind: str  # the metric answer label
    domain: str
    until: float
    shadow_kind: str = ""  # a shadow map's reply: the kind it would have sent
    override: bool = False  # an operator override's answer (counted per use)
    map_name: str = ""  # the map it answers for (``key[0]`` of its ``MemoKey``)
    wire: bytes = b""  # the reply netstring (set by the caller; empty: not by bytes)
    holds_until: float = 0.0  # how far ``until`` may be extended (0: never)
    basis: float = 0.0  # when the cached data it was made from was read

    @property
    def reply(self) -> str:
        if self.text or not self.wire:
            return self.text
        return self.wire[self.wire.index(b":") + 1 : -1].decode("utf-8")


def request_wire(text: str) -> bytes:
    """The request netstring of ``<map> <key>``, as Postfix sends it."""
    return netstring(text.encode("utf-8"))


class AnswerMemo:
    """Memos by their request netstring: the hot path looks up the bytes it received, and a
    (map, key) lookup frames the request first. One map, not one per way of asking."""

    def __init__(
        self,
        max_entries: int = MAX_MEMO_ENTRIES,
        *,
        trusted_until: Callable[[float], float] = lambda basis: 0.0,
    ) -> None:
        self.max_entries = max_entries
        # Until when data read at a given time is known current (``PolicyCache``).
        self.trusted_until = trusted_until
        self._memos: dict[bytes, Memo] = {}  # request netstring -> memo
        # Nearly every domain has one key: held as it is, a tuple only for more (a set
        # would cost 216 octets, a tuple of one 56). Read it with ``_requests``.
        self._by_domain: dict[str, bytes | tuple[bytes, ...]] = {}

    def __len__(self) -> int:
        return len(self._memos)

    def get(self, key: MemoKey, now: float) -> Memo | None:
        """The memo for ``key`` if it still holds at ``now``; an expired one is dropped."""
        return self._live(request_of(key), now)

    def get_wire(self, request: bytes, now: float) -> Memo | None:
        """The memo whose request netstring is ``request``, if it holds at ``now`` and its
        reply can be sent as stored (otherwise the parsed path answers)."""
        memo = self._memos.get(request)  # what ``_live`` does, inline: every hot answer
        if memo is None:
            return None
        if now >= memo.until and not self._extended(memo, now):
            self._drop(request, memo.domain)
            return None
        return memo if memo.wire else None

    def put(self, key: MemoKey, memo: Memo) -> None:
        request = request_of(key)
        if request not in self._memos and len(self._memos) >= self.max_entries:
            self.forget()
        old = self._memos.get(request)
        if old is not None and old.domain != memo.domain:
            self._drop(request, old.domain)
        if memo.wire:
            memo.text = ""
        self._memos[request] = memo
        requests = self._requests(memo.domain)
        if not requests:
            self._by_domain[memo.domain] = request
        elif request not in requests:
            self._by_domain[memo.domain] = (*requests, request)

    def forget(self, domain: str | None = None) -> None:
        """Drop the memos of ``domain`` (its data changed), or all of them (None or "")."""
        if not domain:
            self._memos.clear()
            self._by_domain.clear()
            return
        for request in self._requests(domain):
            self._memos.pop(request, None)
        self._by_domain.pop(domain, None)

    def index_size(self) -> int:
        """Keys held in the per-domain index (equals ``len(self)``; for leak tests)."""
        return sum(len(self._requests(domain)) for domain in self._by_domain)

    def _requests(self, domain: str) -> tuple[bytes, ...]:
        held = self._by_domain.get(domain, ())
        return (held,) if isinstance(held, bytes) else held

    def _live(self, request: bytes, now: float) -> Memo | None:
        memo = self._memos.get(request)
        if memo is not None and now >= memo.until and not self._extended(memo, now):
            self._drop(request, memo.domain)
            return None
        return memo

    def _extended(self, memo: Memo, now: float) -> bool:
        """Move an expired memo's ``until`` on, if its data is still vouched for."""
        until = min(memo.holds_until, self.trusted_until(memo.basis))
        if now >= until:
            return False
        memo.until = until
        return True

    def _drop(self, request: bytes, domain: str) -> None:
        self._memos.pop(request, None)
        rest = tuple(r for r in self._requests(domain) if r != request)
        if len(rest) > 1:
            self._by_domain[domain] = rest
        elif rest:
            self._by_domain[domain] = rest[0]
        else:
            self._by_domain.pop(domain, None)


def request_of(key: MemoKey) -> bytes:
    """The request netstring Postfix sends for (map name, key)."""
    return request_wire(f"{key[0]} {key[1]}")
