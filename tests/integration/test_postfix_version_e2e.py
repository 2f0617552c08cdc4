"""``check-config`` and ``serve`` read the real Postfix's version and policy maps: Debian 12's
Postfix 3.7 on the host, Debian 13's Postfix 3.10 in the lab's trixie root."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.server import ServerProcess, tlspolicy_command
from tests.lab.netutil import wait_until
from tests.lab.trixie import ensure_root

pytestmark = pytest.mark.integration

TLSRPT_MAP = "socketmap:inet:127.0.0.1:8642:QUERYwithTLSRPT"
PLAIN_MAP = "socketmap:inet:127.0.0.1:8642:QUERY"


def postconf_wrapper(tmp_path: Path, policy_maps: str, *, root: Path | None = None) -> Path:
    """A ``postconf`` that reports a main.cf with ``smtp_tls_policy_maps = policy_maps``:
    the host's own, or the one inside ``root`` (run there with chroot)."""
    confdir = tmp_path / "postfix-etc"
    confdir.mkdir(exist_ok=True)
    (confdir / "main.cf").write_text(f"smtp_tls_policy_maps = {policy_maps}\n")
    (confdir / "master.cf").write_text("")
    script = tmp_path / "postconf"
    if root is None:
        body = f'exec postconf -c {confdir} "$@" 2>/dev/null\n'
    else:  # the trixie root is shared and read-only for us: override on the command line
        body = f'exec chroot {root} postconf -o smtp_tls_policy_maps="{policy_maps}" "$@"\n'
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def check_config(config: dict[str, Any], path: Path) -> subprocess.CompletedProcess[str]:
    """``check-config`` of ``config`` with a resolver on loopback: whatever the host's
    /etc/resolv.conf says, no remote-resolver warning adds a line."""
    path.write_text(yaml.safe_dump({"dns": {"nameservers": ["127.0.0.1:53"]}, **config}))
    return subprocess.run(
        tlspolicy_command("check-config", "-c", str(path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_with_postfix_37_refuses_a_tlsrpt_map(tmp_path: Path) -> None:
    postconf = postconf_wrapper(tmp_path, TLSRPT_MAP)
    done = check_config({"postfix": {"postconf": str(postconf)}}, tmp_path / "c.yml")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: Postfix 3.7" in done.stdout
    assert "invalid attribute name: policy_type" in done.stdout
    fits = postconf_wrapper(tmp_path, PLAIN_MAP)
    done = check_config({"postfix": {"postconf": str(fits)}}, tmp_path / "c.yml")
    assert (done.returncode, done.stdout.count("\n")) == (0, 1), done.stdout


@pytest.mark.postfix310
def test_check_config_with_postfix_310_steers_to_the_tlsrpt_map(tmp_path: Path) -> None:
    root = ensure_root()
    postconf = postconf_wrapper(tmp_path, PLAIN_MAP, root=root)
    done = check_config({"postfix": {"postconf": str(postconf)}}, tmp_path / "c.yml")
    assert done.returncode == 0, done.stdout + done.stderr  # a warning, not an error
    assert "warning: Postfix 3.1" in done.stdout
    assert "use a map with tlsrpt: true" in done.stdout
    assert "smtp_tls_enforce_sts_mx_patterns" in done.stdout
    fits = postconf_wrapper(tmp_path, TLSRPT_MAP, root=root)
    done = check_config({"postfix": {"postconf": str(fits)}}, tmp_path / "c.yml")
    assert (done.returncode, done.stdout.count("\n")) == (0, 1), done.stdout


@pytest.mark.postfix310
def test_serve_logs_the_advice_at_start(start_server: Any, tmp_path: Path) -> None:
    postconf = postconf_wrapper(tmp_path, PLAIN_MAP, root=ensure_root())
    server: ServerProcess = start_server(postfix={"postconf": str(postconf)})
    wait_until(lambda: "use a map with tlsrpt: true" in server.log(), timeout=20, what="advice")
    line = next(x for x in server.log().splitlines() if "use a map with tlsrpt" in x)
    assert " WARNING " in line
    assert server.request("dane-only.lab") == "OK dane-only"  # serving meanwhile
