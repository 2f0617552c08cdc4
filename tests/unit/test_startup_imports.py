"""What ``tlspolicy serve`` imports before its first answer: only what every configuration
uses. The rest (aiohttp, the metrics endpoint, the other cache backends, TLSRPT, the
``check`` audit) is imported when a configuration or the first policy fetch needs it."""

from __future__ import annotations

import subprocess
import sys

NOT_AT_START = (
    "aiohttp",
    "prometheus_client",
    "redis",
    "asyncpg",
    "urllib.request",
    "tlspolicy.tlsrpt.runtime",
    "tlspolicy.check",
    "tlspolicy.metrics.registry",
)


def test_serve_command_imports_nothing_a_default_configuration_does_not_use() -> None:
    probe = (
        "import sys, tlspolicy.cli.main, tlspolicy.server.lifecycle, tlspolicy.server.app;"
        f"print(' '.join(m for m in {NOT_AT_START!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == []
