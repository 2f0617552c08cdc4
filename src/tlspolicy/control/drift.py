"""Policy drift: cached enforcing facts that no longer fit the domain's current MX hosts.

Pure. Mail to such a domain will be deferred by Postfix, so the operator must hear of it
before the users do (docs/operator-control.md):

* **MTA-STS**: an ``enforce`` policy none of whose ``mx`` patterns covers a current MX host
  (the policy was not updated when the MX changed). Postfix gets ``secure match=...`` and
  defers mail to that host. The MX hosts come from the DANE branch (its MX lookup), so the
  check runs where both facts meet: when either branch is stored (``lookups``), on the
  cached entry (``tlspolicy cache show``) and on live lookups (``tlspolicy check``).
* **DANE**: a domain cached as ``dane-only`` whose MX RRset a new lookup finds insecure
  (DNSSEC removed or broken upstream): until the cached answer is replaced, Postfix
  requires DANE where none can hold.

The detail names at most ``MAX_LISTED`` patterns and hosts of each list, then "and N
more": both lists come from remote data (a policy may carry thousands of ``mx`` lines), and
one warning must stay one readable log line.

``policy_mx_drift`` and ``dane_drift`` take plain values, so ``check`` can call them on
live lookups; ``entry_drift`` reads a cache entry; ``new_drift`` says what a store changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tlspolicy.cache.entry import CacheEntry
from tlspolicy.dane.result import DaneLevel, DaneResult
from tlspolicy.mtasts.policy import Mode, Policy

MAX_LISTED = 5  # items of one list named in a detail line; the rest are counted


@dataclass(frozen=True, slots=True)
class Drift:
    kind: str  # "mta_sts" | "dane" (the metric label)
    hosts: tuple[str, ...]  # the MX hosts concerned
    detail: str  # one line for logs, ``cache show`` and ``check``

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "hosts": list(self.hosts), "detail": self.detail}


def policy_mx_drift(policy: Policy | None, mx_hosts: Iterable[str]) -> Drift | None:
    """The MX hosts an ``enforce`` policy does not cover, or None (covered, not enforce,
    or no MX hosts known)."""
    if policy is None or policy.mode is not Mode.ENFORCE:
        return None
    hosts = tuple(dict.fromkeys(h.lower().rstrip(".") for h in mx_hosts if h))
    uncovered = tuple(h for h in hosts if not policy.matches(h))
    if not uncovered:
        return None
    detail = (
        f"MTA-STS enforce policy (mx {listed(policy.mx)}) does not cover MX "
        f"{listed(uncovered)}: mail to it will be deferred"
    )
    return Drift("mta_sts", uncovered, detail)


def listed(items: Iterable[str]) -> str:
    """``a, b, c`` for a few items; the first ``MAX_LISTED`` and "and N more" otherwise."""
    items = list(items)
    if len(items) <= MAX_LISTED:
        return ", ".join(items)
    return f"{', '.join(items[:MAX_LISTED])} and {len(items) - MAX_LISTED} more"


def dane_drift(old: DaneResult | None, new: DaneResult) -> Drift | None:
    """A ``dane-only`` domain whose MX RRset ``new`` finds insecure, or None."""
    if old is None or old.level is not DaneLevel.DANE_ONLY or new.mx_secure is not False:
        return None
    hosts = tuple(h.host for h in new.hosts)
    detail = "MX RRset no longer DNSSEC-secure while the domain had dane-only"
    return Drift("dane", hosts, f"{detail}: mail is deferred until the answer changes")


def entry_drift(entry: CacheEntry | None) -> Drift | None:
    """MTA-STS drift in one cache entry (its policy against its DANE branch's MX hosts)."""
    if entry is None or entry.sts is None or entry.dane is None:
        return None
    return policy_mx_drift(entry.sts.policy, (h.host for h in entry.dane.result.hosts))


def new_drift(old: CacheEntry | None, new: CacheEntry) -> list[Drift]:
    """Drift that storing ``new`` over ``old`` reveals (each change once, not every store)."""
    found: list[Drift] = []
    before, after = entry_drift(old), entry_drift(new)
    if after is not None and (before is None or before.hosts != after.hosts):
        found.append(after)
    old_dane = old.dane.result if old is not None and old.dane is not None else None
    if new.dane is not None and (old is None or old.dane is not new.dane):
        dane = dane_drift(old_dane, new.dane.result)
        if dane is not None:
            found.append(dane)
    return found
