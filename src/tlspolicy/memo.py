"""The answer memo: replies made from cached data alone, reusable until that data changes.

The hot path of a busy MTA asks the same few thousand keys again and again; a memo hit
answers without scheduling anything. A memo holds no longer than the plan said its
decision holds (``CachePlan.reusable_until``: DANE refresh window or expiry, MTA-STS
re-check, policy expiry, negative caching, and at most ``cache.hot_ttl``), and storing a
new result for a domain drops that domain's memos. Bounded: when full it is emptied (the
next queries re-make what is used), and the per-domain index only holds live memos, so
neither map can grow past ``max_entries`` however many distinct keys pass through.

A memo also keeps its request and reply as framed on the wire, so the server answers a
repeated request by its raw bytes (``get_wire``) without parsing, decoding or encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    key: MemoKey = ("", "")  # the key it is stored under (set by ``put``)
    request: bytes = b""  # the request netstring this memo answers (set by ``put``)
    wire: bytes = b""  # the reply netstring (set by the caller; empty: not by bytes)

    @property
    def reply(self) -> str:
        if self.text or not self.wire:
            return self.text
        return self.wire[self.wire.index(b":") + 1 : -1].decode("utf-8")


def netstring(text: str) -> bytes:
    data = text.encode("utf-8")
    return b"%d:%s," % (len(data), data)


class AnswerMemo:
    def __init__(self, max_entries: int = MAX_MEMO_ENTRIES) -> None:
        self.max_entries = max_entries
        self._memos: dict[MemoKey, Memo] = {}
        # A tuple, not a set: nearly every domain has one key, and a set costs 216 octets.
        self._by_domain: dict[str, tuple[MemoKey, ...]] = {}
        self._by_wire: dict[bytes, Memo] = {}  # request netstring -> memo

    def __len__(self) -> int:
        return len(self._memos)

    def get(self, key: MemoKey, now: float) -> Memo | None:
        """The memo for ``key`` if it still holds at ``now``; an expired one is dropped."""
        memo = self._memos.get(key)
        if memo is None:
            return None
        if now >= memo.until:
            self._drop(key, memo.domain)
            return None
        return memo

    def get_wire(self, request: bytes, now: float) -> Memo | None:
        """The memo whose request netstring is ``request``, if it holds at ``now``."""
        memo = self._by_wire.get(request)
        if memo is not None and now >= memo.until:
            self._drop(memo.key, memo.domain)
            return None
        return memo

    def put(self, key: MemoKey, memo: Memo) -> None:
        if key not in self._memos and len(self._memos) >= self.max_entries:
            self.forget()
        old = self._memos.get(key)
        if old is not None and old.domain != memo.domain:
            self._drop(key, old.domain)
        memo.key = key
        self._memos[key] = memo
        keys = self._by_domain.get(memo.domain, ())
        if key not in keys:
            self._by_domain[memo.domain] = (*keys, key)
        if memo.wire:
            memo.text = ""
            memo.request = netstring(f"{key[0]} {key[1]}")
            self._by_wire[memo.request] = memo
        elif old is not None:
            self._by_wire.pop(old.request, None)

    def forget(self, domain: str | None = None) -> None:
        """Drop the memos of ``domain`` (its data changed), or all of them (None or "")."""
        if not domain:
            self._memos.clear()
            self._by_domain.clear()
            self._by_wire.clear()
            return
        for key in self._by_domain.pop(domain, ()):
            memo = self._memos.pop(key, None)
            if memo is not None:
                self._by_wire.pop(memo.request, None)

    def index_size(self) -> int:
        """Keys held in the per-domain index (equals ``len(self)``; for leak tests)."""
        return sum(len(keys) for keys in self._by_domain.values())

    def wire_index_size(self) -> int:
        """Requests held in the wire index (at most ``len(self)``; for leak tests)."""
        return len(self._by_wire)

    def _drop(self, key: MemoKey, domain: str) -> None:
        memo = self._memos.pop(key, None)
        if memo is not None:
            self._by_wire.pop(memo.request, None)
        keys = self._by_domain.get(domain)
        if keys is not None:
            rest = tuple(k for k in keys if k != key)
            if rest:
                self._by_domain[domain] = rest
            else:
                del self._by_domain[domain]
