"""``dns.on_validation_failure``: what to answer while the resolver does not validate.

A resolver that answers without validating makes every domain look unsigned, so DANE
domains silently lose DANE (RFC 7672 §2.1.1 needs a validating resolver). The resolver
self-check (``selfcheck.ResolverMonitor``) notices; this guard acts on it:

* ``continue`` (the default): answers go on. MTA-STS and policy-less domains keep
  working and the error shows in the log, ``/healthz`` and
  ``tlspolicy_resolver_validating``. A canary that changes (a self-check false alarm) must
  not stop all outgoing mail, and Postfix itself only warns when its DNSSEC probe fails.
* ``temp``: every request that would need a lookup is answered ``TEMP resolver not
  validating`` until the self-check passes again: mail is deferred, never sent with DANE
  silently dropped. Keys that need no lookup (address literals, parent-domain probes,
  unknown maps) are answered as usual, so relayhost next-hops like ``[192.0.2.1]`` still go.

It sits in front of the service (``cli/serve.py`` ``Runner._answer`` and ``_answer_now``),
so a broken resolver also stops new lookups from filling the cache with "no DANE".
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tlspolicy.metrics.sink import NULL_METRICS, MetricsSink
from tlspolicy.socketmap.answer import temp
from tlspolicy.socketmap.keys import normalize_key

log = logging.getLogger("tlspolicy.server")

NOT_VALIDATING_REPLY = temp("resolver not validating")


class ValidationGuard:
    """Says ``TEMP resolver not validating`` for a request, or None to answer as usual.

    Args:
        mode: the current ``dns.on_validation_failure`` ("continue" or "temp"), read per
            request so a reload applies at once.
        not_validating: true while the self-check finds the resolver not validating.
        has_profile: whether a map name is configured (unknown maps keep their PERM).
    """

    def __init__(
        self,
        *,
        mode: Callable[[], str],
        not_validating: Callable[[], bool],
        has_profile: Callable[[str], bool],
        metrics: MetricsSink = NULL_METRICS,
    ) -> None:
        self.mode = mode
        self.not_validating = not_validating
        self.has_profile = has_profile
        self.metrics = metrics
        self.deferring = False  # for one log line per change

    def quiet(self) -> bool:
        """True when ``check`` would pass every request and has no change to log."""
        return not self.deferring and (self.mode() != "temp" or not self.not_validating())

    def check(self, name: str, key: str) -> str | None:
        """The TEMP reply when the request must wait for a validating resolver, else None."""
        if self.mode() != "temp" or not self.not_validating():
            if self.deferring:
                self.deferring = False
                log.warning("resolver validates again: answering lookups again")
            return None
        if not self.has_profile(name) or normalize_key(key).domain is None:
            return None  # answered without any lookup: nothing to distrust
        if not self.deferring:
            self.deferring = True
            log.error(
                "resolver not validating and dns.on_validation_failure is temp: answering "
                "TEMP for every lookup until the resolver self-check passes"
            )
        self.metrics.query(name, "temp")
        return NOT_VALIDATING_REPLY
