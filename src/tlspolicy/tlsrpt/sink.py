"""What the TLSRPT collector and reporter record in metrics, with a do-nothing default.

``tlspolicy.metrics.Metrics`` implements it; label values come from the fixed sets there
(``TLSRPT_*``: datagram outcomes, policy types, delivery methods), never from a domain.
"""

from __future__ import annotations

from typing import Protocol


class TlsrptMetricsSink(Protocol):
    def tlsrpt_datagrams(self, outcome: str, n: int = 1) -> None: ...
    def tlsrpt_session(self, policy_type: str, result: str) -> None: ...
    def tlsrpt_report(self, method: str, outcome: str) -> None: ...
    def tlsrpt_late(self, n: int) -> None: ...


class NullTlsrptMetrics:
    def tlsrpt_datagrams(self, outcome: str, n: int = 1) -> None:
        return None

    def tlsrpt_session(self, policy_type: str, result: str) -> None:
        return None

    def tlsrpt_report(self, method: str, outcome: str) -> None:
        return None

    def tlsrpt_late(self, n: int) -> None:
        return None


NULL_TLSRPT_METRICS = NullTlsrptMetrics()
