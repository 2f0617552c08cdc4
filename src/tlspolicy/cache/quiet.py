"""How long an in-process copy of backend data may be trusted without reading it again.

Why: a copy read at ``loaded_at`` is trusted for ``cache.hot_ttl``, so that what another
process writes (another worker, ``tlspolicy cache delete``, an override added on another
MTA) is seen within that bound. Re-reading every hot domain every ``hot_ttl`` cost a busy
server a burst of backend reads, decodes and re-made answers every few seconds: with 1,000
cached MTA-STS domains about 0.3 s of CPU each time, and a p99 of several milliseconds for
the queries that waited behind it. A backend that can tell cheaply that nobody else wrote
since it last looked (SQLite's ``PRAGMA data_version``) vouches for every copy at once.

Rules (pure; ``PolicyCache`` asks the backend and reports here, one check at a time):

* ``checked(started, finished, unchanged)`` records one check. ``unchanged`` means no other
  writer committed between the previous check and this one. A check that saw a change (or
  failed, or was the first) marks ``finished`` as the moment after which reads are known
  to include everything written elsewhere so far.
* ``trusted_until(loaded_at)``: a copy read after the last such moment is trusted until
  ``hot_ttl`` after the latest unchanged check began (or after it was read, if later); a
  copy read before it until ``hot_ttl`` after it was read, and no longer than ``hot_ttl /
  2`` after the change was seen. With checks every ``hot_ttl / 2`` a quiet store's copies
  never go stale, and a change elsewhere (``tlspolicy cache purge``, another worker) is
  seen within ``hot_ttl`` of being made, as the README promises: at most ``hot_ttl / 2``
  until a check sees it, at most ``hot_ttl / 2`` more until every older copy is re-read.
* A backend that can never tell (Redis, PostgreSQL: others write all the time) never
  vouches: its copies live ``hot_ttl`` after they were read, whatever the checks say.
* ``always``: no other writer can exist (the memory backend): a copy never goes stale.
"""

from __future__ import annotations

import math


class QuietChecks:
    def __init__(self, hot_ttl: float, *, always: bool = False) -> None:
        self.hot_ttl = hot_ttl
        self._always = always
        self._clean_since: float | None = None  # reads after this saw every change elsewhere
        self._verified_at = -math.inf  # when the latest check that saw no change began

    def checked(self, started: float, finished: float, unchanged: bool) -> bool:
        """Record one check; True when it withdrew trust that checks had given (a change
        elsewhere after a quiet spell): answers made from copies may no longer hold."""
        if unchanged and self._clean_since is not None:
            self._verified_at = max(self._verified_at, started)
            return False
        self._clean_since = finished
        return self.vouching

    @property
    def vouching(self) -> bool:
        """Some check has vouched for copies: the backend can tell (SQLite). A shared
        store (Redis, PostgreSQL) never does; its copies simply live ``hot_ttl``."""
        return self._verified_at > -math.inf

    def trusted_until(self, loaded_at: float) -> float:
        """Until when a copy read at ``loaded_at`` may be used without reading it again."""
        if self._always:
            return math.inf
        if self._clean_since is None:
            return loaded_at + self.hot_ttl
        if not self.vouching:
            return loaded_at + self.hot_ttl
        if loaded_at < self._clean_since:  # read before a change elsewhere was seen
            return min(loaded_at, self._clean_since - self.hot_ttl / 2) + self.hot_ttl
        return max(loaded_at, self._verified_at) + self.hot_ttl
