"""What quiet checks vouch for: copies read after the last change seen, for hot_ttl past
the latest check that saw none; anything else for hot_ttl after it was read."""

from __future__ import annotations

import math

from tlspolicy.cache.quiet import QuietChecks

TTL = 5.0


def test_quiet_checks_before_any_check_trust_a_copy_for_hot_ttl() -> None:
    assert QuietChecks(TTL).trusted_until(100.0) == 105.0


def test_quiet_checks_first_check_vouches_for_nothing_read_before_it() -> None:
    quiet = QuietChecks(TTL)
    quiet.checked(100.0, 100.1, unchanged=True)  # the first: no earlier state to compare
    assert quiet.trusted_until(99.0) == 104.0
    assert quiet.trusted_until(100.1) == 105.1


def test_quiet_checks_extend_copies_read_after_the_last_change() -> None:
    quiet = QuietChecks(TTL)
    quiet.checked(100.0, 100.1, unchanged=False)
    quiet.checked(110.0, 110.1, unchanged=True)
    assert quiet.trusted_until(101.0) == 115.0  # hot_ttl after the quiet check began
    assert quiet.trusted_until(112.0) == 117.0  # read after it: hot_ttl after the read
    # read during the check that saw a change: no longer than hot_ttl / 2 after it
    assert quiet.trusted_until(100.05) == 102.6


def test_quiet_checks_a_change_ends_the_extension_of_older_copies() -> None:
    quiet = QuietChecks(TTL)
    quiet.checked(100.0, 100.1, unchanged=True)
    quiet.checked(102.5, 102.6, unchanged=True)
    assert quiet.trusted_until(101.0) == 107.5
    quiet.checked(105.0, 105.1, unchanged=False)  # another process wrote
    assert quiet.trusted_until(101.0) == 106.0
    quiet.checked(107.5, 107.6, unchanged=True)
    assert quiet.trusted_until(101.0) == 106.0  # a later quiet check cannot vouch for it
    assert quiet.trusted_until(106.0) == 112.5


def test_quiet_checks_in_order_never_move_the_verified_time_back() -> None:
    quiet = QuietChecks(TTL)
    quiet.checked(100.0, 100.1, unchanged=False)
    quiet.checked(110.0, 110.1, unchanged=True)
    quiet.checked(109.0, 109.2, unchanged=True)  # a slow clock step: keep the later one
    assert quiet.trusted_until(101.0) == 115.0


def test_quiet_checks_always_when_no_other_writer_exists() -> None:
    assert QuietChecks(TTL, always=True).trusted_until(0.0) == math.inf


def test_quiet_checks_a_change_elsewhere_is_seen_within_hot_ttl() -> None:
    """A purge by another process at 100: a check sees it by 102.5 (every hot_ttl / 2), and
    no copy read before is trusted past 105 = hot_ttl after the purge."""
    quiet = QuietChecks(TTL)
    quiet.checked(90.0, 90.0, unchanged=False)
    quiet.checked(97.5, 97.5, unchanged=True)
    assert quiet.trusted_until(99.0) == 104.0  # vouched: hot_ttl after the read
    quiet.checked(102.5, 102.5, unchanged=False)  # the purge of 100 is seen
    for loaded_at in (91.0, 99.0, 102.0):
        assert quiet.trusted_until(loaded_at) <= 105.0, loaded_at
    assert quiet.trusted_until(102.6) == 107.6  # read after the change: as before
