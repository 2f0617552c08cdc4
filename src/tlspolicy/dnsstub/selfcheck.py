"""Resolver self-check: does the configured resolver really validate DNSSEC?

DANE answers are only as good as the resolver's AD bit: RFC 7672 §2.1.1 requires a
security-aware, validating resolver, and a non-validating one silently turns every DANE
domain into "no DANE" (docs/protocol-notes.md §7.6: resolver setup is the top DANE failure
in practice).
Two canary queries settle it:

* a name in a signed zone must come back with the AD flag (any answer, positive or
  negative: a validated NXDOMAIN/NODATA carries AD too), and
* a name whose signatures are deliberately broken must fail (SERVFAIL); a resolver that
  answers it accepts bogus data and validates nothing.

Defaults that work on the public internet (both long-lived, well-known canaries):
``isc.org`` (the BIND maintainers' zone, signed for well over a decade) and
``dnssec-failed.org`` (Comcast's permanently mis-signed test domain). Tests use lab names.

``check_resolver`` is one check; ``ResolverMonitor`` repeats it in a task, updates
``tlspolicy_resolver_validating`` and logs only on changes (no log storm). While the check
fails it is repeated every ``FAILING_INTERVAL_S`` at most, so a repaired resolver is seen
soon (``dns.on_validation_failure: temp`` defers mail until then).

``SelfCheck.not_validating`` singles out the verdict "the resolver answers but does not
validate" (no AD flag, or bogus data accepted). Only that one makes answers untrustworthy:
an unreachable resolver or a failing canary makes lookups fail by themselves, and cached
answers (validated earlier) stay good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.errors import DnsError
from tlspolicy.metrics.sink import NULL_METRICS, MetricsSink

log = logging.getLogger(__name__)

DEFAULT_SECURE_NAME = "isc.org"
DEFAULT_BOGUS_NAME = "dnssec-failed.org"
DEFAULT_INTERVAL_S = 600.0  # 10 min: a broken resolver is noticed well before DANE TTLs run out
FAILING_INTERVAL_S = 30.0  # while failing: a repaired resolver is noticed within this
# One whole check (two queries, each bounded by dns.timeout) never takes longer than this.
CHECK_TIMEOUT_S = 30.0
CANARY_RDTYPE = "A"  # any type works; A is supported by every DnsClient (client.py)

# DnsError kinds that mean "could not ask", not "the resolver judged the data".
_UNREACHABLE_KINDS = frozenset({"timeout", "network", "refused"})


# Where to fix a check that could not run: the probe names, or the check itself.
PROBE_FIX = (
    "set dns.selfcheck_secure_name to a DNSSEC-signed name and dns.selfcheck_bogus_name to a"
    " name with broken signatures that this resolver can reach, or dns.selfcheck: false"
)


@dataclass(frozen=True, slots=True)
class SelfCheck:
    """The verdict of one check: ``ok`` and a one-line ``reason`` for logs and /healthz.

    Three ways to fail, told apart because their fixes differ: the resolver does not
    validate (``not_validating``: DANE answers cannot be trusted), the probe names cannot
    be resolved (``probe_failed``: the check proves nothing either way, e.g. a resolver
    without Internet access and the default names), or the resolver is unreachable.
    """

    ok: bool
    reason: str
    not_validating: bool = False  # it answered, but without validating (module docstring)
    probe_failed: bool = False  # a probe name could not be resolved: no verdict


NOT_RUN = SelfCheck(ok=False, reason="resolver self-check has not run yet")


async def check_resolver(dns: DnsClient, *, secure_name: str, bogus_name: str) -> SelfCheck:
    """Ask the two canaries and judge the resolver.

    Args:
        dns: the client the lookups use (so the very same resolver path is checked).
        secure_name: a name in a DNSSEC-signed zone; its answer must have the AD flag.
        bogus_name: a name with broken signatures; it must fail with SERVFAIL.

    Returns:
        ``SelfCheck(True, ...)`` when both canaries behave, otherwise ``ok=False`` with the
        first problem found. Never raises for DNS failures.
    """
    try:
        secure = await dns.query(secure_name, CANARY_RDTYPE)
    except DnsError as exc:
        if exc.kind in _UNREACHABLE_KINDS:
            return SelfCheck(False, f"resolver unreachable: {exc}")
        return SelfCheck(
            False,
            f"cannot resolve the probe name {secure_name} (dns.selfcheck_secure_name):"
            f" {exc}; whether the resolver validates is unknown; {PROBE_FIX}",
            probe_failed=True,
        )
    if not secure.secure:
        return SelfCheck(
            False,
            f"resolver does not set the AD flag for {secure_name}: not validating",
            not_validating=True,
        )
    try:
        bogus = await dns.query(bogus_name, CANARY_RDTYPE)
    except DnsError as exc:
        if exc.kind == "servfail":
            return SelfCheck(
                True,
                f"resolver validates: AD set for {secure_name}, {bogus_name} refused",
            )
        if exc.kind in _UNREACHABLE_KINDS:
            return SelfCheck(False, f"resolver unreachable: {exc}")
        return SelfCheck(
            False,
            f"cannot resolve the probe name {bogus_name} (dns.selfcheck_bogus_name): {exc};"
            f" {PROBE_FIX}",
            probe_failed=True,
        )
    verdict = "marked secure" if bogus.secure else "accepted"
    return SelfCheck(
        False,
        f"resolver answered {bogus_name}: not validating (bogus data {verdict})",
        not_validating=True,
    )


def describe(result: SelfCheck) -> str:
    """The reason, with what it means for the answers."""
    if result.not_validating:
        return (
            f"{result.reason}; DANE answers cannot be trusted until the resolver validates"
            " DNSSEC (RFC 7672 §2.1.1)"
        )
    return result.reason


class ResolverMonitor:
    """Runs ``check_resolver`` at start and every ``interval`` seconds.

    Logs ERROR once when the check starts failing, INFO when it passes again (and on the
    first pass), and keeps ``metrics.set_resolver_validating`` and ``status`` current.
    """

    def __init__(
        self,
        dns: DnsClient,
        *,
        secure_name: str = DEFAULT_SECURE_NAME,
        bogus_name: str = DEFAULT_BOGUS_NAME,
        interval: float = DEFAULT_INTERVAL_S,
        metrics: MetricsSink = NULL_METRICS,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.dns = dns
        self.secure_name = secure_name
        self.bogus_name = bogus_name
        self.interval = interval
        self.metrics = metrics
        self.status: SelfCheck = NOT_RUN
        self._checked = False
        self._task: asyncio.Task[None] | None = None

    def reconfigure(self, *, secure_name: str, bogus_name: str, interval: float) -> None:
        """Take new probe names and interval (a reload); the next check uses them."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        changed = (secure_name, bogus_name) != (self.secure_name, self.bogus_name)
        self.secure_name, self.bogus_name, self.interval = secure_name, bogus_name, interval
        if changed and self._task is not None:
            self._task.cancel()  # check now with the new names, then on the new interval
            self._task = asyncio.create_task(self._restart(), name="resolver-selfcheck")

    async def _restart(self) -> None:
        await self.check_now()
        await self._loop()

    def health(self) -> tuple[bool, str]:
        """``status`` in the shape ``HttpEndpoint`` health callables return."""
        return self.status.ok, self.status.reason

    def not_validating(self) -> bool:
        """The last check found a resolver that answers without validating DNSSEC."""
        return self.status.not_validating

    async def check_now(self) -> SelfCheck:
        """Run one check, record it, log a change; returns the new status."""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                result = await check_resolver(
                    self.dns, secure_name=self.secure_name, bogus_name=self.bogus_name
                )
        except TimeoutError:
            result = SelfCheck(False, f"resolver unreachable: no verdict in {CHECK_TIMEOUT_S:g} s")
        self._record(result)
        return result

    def _record(self, result: SelfCheck) -> None:
        previous, first = self.status, not self._checked
        self.status, self._checked = result, True
        self.metrics.set_resolver_validating(result.ok)
        if result.ok and (first or not previous.ok):
            log.info(
                "resolver self-check %s: %s", "passed" if first else "recovered", result.reason
            )
        elif not result.ok and (first or previous.ok or previous.reason != result.reason):
            log.error("resolver self-check failed: %s", describe(result))
        else:
            log.debug("resolver self-check unchanged: %s", result.reason)

    async def start(self) -> SelfCheck:
        """Check once now (awaited), then keep checking in the background."""
        if self._task is not None:
            raise RuntimeError("ResolverMonitor already started")
        result = await self.check_now()
        self._task = asyncio.create_task(self._loop(), name="resolver-selfcheck")
        return result

    async def _loop(self) -> None:
        while True:
            failing = self._checked and not self.status.ok
            await asyncio.sleep(
                min(self.interval, FAILING_INTERVAL_S) if failing else self.interval
            )
            try:
                await self.check_now()
            except Exception:  # a bug in a DnsClient must not end the monitor
                log.exception("resolver self-check crashed")
                self._record(SelfCheck(False, "resolver self-check crashed (see log)"))

    async def aclose(self) -> None:
        """Stop the background task."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
