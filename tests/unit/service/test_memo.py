"""The answer memo: bounded, expiring, dropped per domain, and its index never leaks."""

from __future__ import annotations

from tlspolicy.service.memo import AnswerMemo, Memo


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


def test_memo_by_wire_answers_the_same_request_bytes_and_goes_with_its_memo() -> None:
    memos = AnswerMemo(max_entries=100)
    held = memo("a.example", 10.0)
    held.wire = b"12:OK dane-only,"
    memos.put(("QUERY", "A.example"), held)  # the key as sent: case kept
    request = b"15:QUERY A.example,"
    assert memos.get_wire(request, 1.0) is held
    assert memos.get_wire(b"15:QUERY a.example,", 1.0) is None  # other bytes, other request
    assert memos.get_wire(request, 10.0) is None  # expired: dropped, index included
    assert memos.index_size() == 0 and len(memos) == 0
    memos.put(("QUERY", "A.example"), held)
    memos.forget("a.example")
    assert memos.get_wire(request, 1.0) is None and memos.index_size() == 0
    for n in range(300):  # bounded like the memos themselves
        filler = memo(f"d{n}.example", 10.0)
        filler.wire = b"2:OK,"
        memos.put(("QUERY", f"d{n}.example"), filler)
        assert memos.index_size() == len(memos) <= 100
    memos.put(("QUERY", "d299.example"), memo("d299.example", 10.0))  # no wire form now
    assert memos.get_wire(b"18:QUERY d299.example,", 1.0) is None
    assert memos.get(("QUERY", "d299.example"), 1.0) is not None  # the parsed path has it


def test_memo_keeps_its_reply_once_and_reads_it_from_the_netstring() -> None:
    memos = AnswerMemo()
    held = memo("a.example", 10.0, reply="OK secure match=mx.a.example")
    held.wire = b"29:OK secure match=mx.a.example,"
    memos.put(("QUERY", "a.example"), held)
    assert held.text == ""  # one copy: the netstring
    found = memos.get(("QUERY", "a.example"), 1.0)
    assert found is not None and found.reply == "OK secure match=mx.a.example"
    unframed = memo("b.example", 10.0, reply="TEMP too long")  # no netstring: text kept
    memos.put(("QUERY", "b.example"), unframed)
    assert memos.get(("QUERY", "b.example"), 1.0).reply == "TEMP too long"  # type: ignore[union-attr]


def test_memo_domain_index_drops_one_key_and_keeps_the_others() -> None:
    memos = AnswerMemo()
    for key in ("a.example", "A.example", "a.example."):
        memos.put(("QUERY", key), memo("a.example", 10.0))
    memos.put(("QUERY", "A.example"), memo("a.example", 10.0))  # again: no duplicate
    assert memos.index_size() == 3
    assert memos.get(("QUERY", "A.example"), 10.0) is None  # expired: dropped
    assert memos.index_size() == 2
    memos.forget("a.example")
    assert len(memos) == 0 and memos.index_size() == 0
