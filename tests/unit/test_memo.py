"""The answer memo: bounded, expiring, dropped per domain, and its index never leaks."""

from __future__ import annotations

from tlspolicy.memo import AnswerMemo, Memo


def memo(domain: str, until: float, reply: str = "OK dane-only") -> Memo:
    return Memo(reply, "dane-only", domain, until)


def test_memo_holds_until_its_deadline() -> None:
    memos = AnswerMemo()
    memos.put(("QUERY", "a.example"), memo("a.example", 10.0))
    assert memos.get(("QUERY", "a.example"), 9.9) is not None
    assert memos.get(("QUERY", "a.example"), 10.0) is None
    assert len(memos) == 0 and memos.index_size() == 0


def test_memo_forget_one_domain_or_all() -> None:
    memos = AnswerMemo()
    memos.put(("QUERY", "a.example"), memo("a.example", 10.0))
    memos.put(("QUERY", "A.example."), memo("a.example", 10.0))
    memos.put(("QUERY", "b.example"), memo("b.example", 10.0))
    memos.forget("a.example")
    assert memos.get(("QUERY", "a.example"), 1.0) is None
    assert memos.get(("QUERY", "A.example."), 1.0) is None
    assert memos.get(("QUERY", "b.example"), 1.0) is not None
    memos.forget("")
    assert len(memos) == 0 and memos.index_size() == 0


def test_memo_is_bounded_and_index_does_not_leak() -> None:
    memos = AnswerMemo(max_entries=100)
    for round_ in range(50):  # many distinct keys, each memo re-made many times
        for n in range(300):
            key = ("QUERY", f"d{n}.example")
            memos.get(key, float(round_))
            memos.put(key, memo(f"d{n}.example", round_ + 0.5))
        assert len(memos) <= 100
        assert memos.index_size() == len(memos)


def test_memo_replacing_a_key_keeps_the_index_exact() -> None:
    memos = AnswerMemo()
    for _ in range(1000):
        memos.put(("QUERY", "a.example"), memo("a.example", 10.0))
    assert memos.index_size() == 1
    memos.put(("QUERY", "a.example"), memo("b.example", 10.0))  # same key, other domain
    assert memos.index_size() == 1
    memos.forget("a.example")
    assert memos.get(("QUERY", "a.example"), 1.0) is not None
