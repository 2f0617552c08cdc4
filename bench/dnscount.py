"""Questions the lab's Unbound answered so far (``unbound-control stats_noreset``).

Counted at the resolver, so ours and the peer are measured the same way: the difference
around a cold pass over N domains, divided by N, is the DNS queries per domain.
"""

from __future__ import annotations

from bench.lab import BenchLab


def resolver_queries(lab: BenchLab) -> int:
    """``total.num.queries``: every question from every client, cache hits included."""
    for line in lab.unbound.control("stats_noreset").splitlines():
        key, _, value = line.partition("=")
        if key == "total.num.queries":
            return int(value)
    raise RuntimeError("unbound-control stats_noreset has no total.num.queries")
