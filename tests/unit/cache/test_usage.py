"""PendingUses: counting in memory, bounded, and put back after a failed flush."""

from __future__ import annotations

from tlspolicy.cache.usage import PendingUses


def test_pending_uses_counts_hits_and_latest_use() -> None:
    uses = PendingUses(10)
    uses.note("a.example", 5.0)
    uses.note("a.example", 3.0)
    uses.note("b.example", 4.0)
    assert uses.take() == {"a.example": (5.0, 2), "b.example": (4.0, 1)}
    assert uses.take() == {}


def test_pending_uses_new_domains_past_the_limit_go_uncounted() -> None:
    uses = PendingUses(1)
    uses.note("a.example", 1.0)
    uses.note("b.example", 1.0)
    uses.note("a.example", 2.0)  # a known domain is still counted
    assert uses.take() == {"a.example": (2.0, 2)}


def test_pending_uses_restore_merges_and_ignores_the_limit() -> None:
    uses = PendingUses(1)
    uses.note("a.example", 1.0)
    batch = uses.take()
    uses.note("b.example", 2.0)
    uses.restore(batch)
    uses.restore({"b.example": (1.0, 4)})
    assert uses.take() == {"a.example": (1.0, 1), "b.example": (2.0, 5)}


def test_pending_uses_discard_and_clear() -> None:
    uses = PendingUses(10)
    for name in ("a", "b", "c"):
        uses.note(f"{name}.example", 1.0)
    uses.discard("a.example")
    uses.discard("absent.example")
    assert set(uses.take()) == {"b.example", "c.example"}
    uses.note("d.example", 1.0)
    uses.clear()
    assert uses.take() == {}
