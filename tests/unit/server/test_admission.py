"""Admission at the connection cap: the connection table and burst logging (sans-IO)."""

from __future__ import annotations

from tlspolicy.server.admission import Burst, ConnectionTable


def test_connection_table_longest_idle_skips_busy_ones() -> None:
    table: ConnectionTable[str] = ConnectionTable()
    for name in ("a", "b", "c", "d"):
        table.add(name)
    table.touch("a")  # a request on a: now the most recent
    assert list(table) == ["b", "c", "d", "a"]
    assert table.longest_idle(lambda c: c != "b") == "c"
    assert table.longest_idle(lambda c: False) is None
    table.discard("c")
    table.discard("c")  # twice is fine
    table.touch("c")  # a closed connection stays out
    assert len(table) == 3 and "c" not in table


def test_burst_logs_the_first_event_after_a_quiet_period() -> None:
    burst = Burst(quiet=10.0)
    assert [burst.note(t) for t in (0.0, 1.0, 5.0, 14.0)] == [True, False, False, False]
    assert burst.count == 4
    assert burst.note(24.5) is True  # 10.5 s since the last one: a new burst
    assert burst.count == 1
