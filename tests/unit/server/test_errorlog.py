"""The traceback rate limit for unexpected errors while answering (sans-IO)."""

from __future__ import annotations

from tlspolicy.server.errorlog import ErrorLog, error_kind


def error_at(line: int) -> BaseException:
    try:
        if line == 1:
            raise ValueError("first place")
        raise ValueError("second place")
    except ValueError as exc:
        return exc


def test_error_log_once_per_kind_and_window() -> None:
    log = ErrorLog(window=600.0)
    one, two = error_kind(error_at(1)), error_kind(error_at(2))
    assert one != two and one.startswith("builtins.ValueError at ")
    assert log.admit(one, 0.0) == 0
    assert log.admit(one, 1.0) is None
    assert log.admit(one, 2.0) is None
    assert log.admit(two, 3.0) == 0  # another place: its own traceback
    assert log.admit(one, 601.0) == 2  # logged again, saying how many were not


def test_error_log_forgets_the_oldest_kind_when_full() -> None:
    log = ErrorLog()
    for i in range(200):
        assert log.admit(f"kind{i}", 0.0) == 0
    assert log.admit("kind0", 1.0) == 0  # forgotten, so logged again
    assert log.admit("kind199", 1.0) is None
