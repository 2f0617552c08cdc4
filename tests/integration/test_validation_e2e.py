"""dns.on_validation_failure end to end, with a resolver that does not validate.

The lab's NSD is authoritative for ``lab.`` and never sets the AD flag, so pointing the
server straight at it gives a resolver that answers but does not validate (as in
``test_ops_e2e.py::test_ops_healthz_flags_non_validating_resolver``). The self-check
canaries are the lab's (``dane-only.lab`` signed, ``bogus.lab`` broken).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import ServerProcess, tlspolicy_command
from tests.lab.scenario import Lab

pytestmark = pytest.mark.integration

STS_GOOD = "OK secure match=mx1.sts-good.lab:mx2.sts-good.lab servername=hostname"


def wait_for_log(server: ServerProcess, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in server.log():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged:\n{server.log()}")


def non_validating(start_server: Any, lab: Lab, **dns: Any) -> ServerProcess:
    server: ServerProcess = start_server(dns={"nameservers": [f"127.0.0.1:{lab.nsd_port}"], **dns})
    wait_for_log(server, "resolver self-check failed")
    return server


def test_validation_failure_temp_defers_lookups(start_server: Any, lab: Lab) -> None:
    server = non_validating(start_server, lab, on_validation_failure="temp")
    for key in ("dane-only.lab", "sts-good.lab", "plain.lab", "[mx1.dane-only.lab]:25"):
        assert server.request(key) == "TEMP resolver not validating", key
    # No lookup needed, nothing to distrust: answered as usual.
    assert server.request("[192.0.2.1]") == "NOTFOUND "
    assert server.request(".sts-good.lab") == "NOTFOUND "
    assert server.request("sts-good.lab", "NOSUCHMAP").startswith("PERM ")
    assert "dns.on_validation_failure is temp" in server.log()
    assert server.log().count("dns.on_validation_failure is temp") == 1  # once, not per query


def test_validation_failure_continue_answers_as_unsigned(start_server: Any, lab: Lab) -> None:
    # The default. DANE is silently lost (the resolver says nothing is signed); MTA-STS and
    # everything else go on. The error is in the log and /healthz (test_ops_e2e.py).
    server = non_validating(start_server, lab)
    assert server.request("dane-only.lab") == "NOTFOUND "
    assert server.request("sts-good.lab") == STS_GOOD
    assert "resolver not validating" not in server.log()


def test_check_and_query_refuse_to_judge_through_a_non_validating_resolver(
    lab: Lab, tmp_path: Path
) -> None:
    """Pointed at the lab's authoritative server (no validation, no AD bit), ``query``
    and ``check`` say so first and exit non-zero instead of calling a DANE domain
    unsigned."""
    config = lab.write_config(
        tmp_path / "tlspolicy.yml", dns={"nameservers": [f"127.0.0.1:{lab.nsd_port}"]}
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            tlspolicy_command(*args, "-c", str(config)),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    query = run("query", "dane-only.lab")
    assert query.returncode == 75, query.stdout + query.stderr
    assert "✗ resolver self-check failed: resolver does not set the AD flag" in query.stderr
    check = run("check", "dane-only.lab", "--no-smtp")
    assert check.returncode == 3, check.stdout + check.stderr
    first = "? dane-only.lab: the check could not run: resolver self-check failed: resolver"
    assert check.stdout.startswith(first)
    assert "DANE answers cannot be trusted" in check.stdout
    monitoring = run("check", "dane-only.lab", "--no-smtp", "--monitoring")
    assert monitoring.returncode == 3
    assert monitoring.stdout.startswith("TLSPOLICY UNKNOWN - dane-only.lab: check could not run")
    assert "resolver self-check failed" in monitoring.stdout
