"""Without ``-c``, the admin commands act on the cache of a server started without ``-c``.

Two ways to name the file: ``TLSPOLICY_CONFIG``, and the default path
``/etc/tlspolicy/tlspolicy.yml``. The default path is tested in a mount namespace where an
overlay puts a temporary directory over the host's /etc (the host's /etc is never
written); the server runs in it and every command enters it (``nsenter``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.cachetools import STS_GOOD
from tests.integration.server import ServerProcess, tlspolicy_command
from tests.lab.netutil import wait_until
from tests.lab.scenario import Lab
from tlspolicy.config import CONFIG_ENV, DEFAULT_CONFIG_PATH

pytestmark = pytest.mark.integration

OVERRIDE_TIMEOUT_S = 10.0  # hot_ttl 1 s: one re-read of the store, plus a memo
# Mount an overlay of a temporary upper directory on /etc, then run the command.
OVERLAY_ETC = (
    'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc'
    ' && shift 2 && exec "$@"'
)

Runner = Callable[..., subprocess.CompletedProcess[str]]


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != CONFIG_ENV}


@pytest.fixture(params=["environment", "default-path"])
def started(
    request: pytest.FixtureRequest, fresh_lab: Lab, tmp_path: Path
) -> Iterator[tuple[ServerProcess, Runner, str]]:
    """A server with a sqlite cache, started without ``-c``, and a runner for commands that
    see the same file the same way."""
    cache = {"backend": "sqlite", "path": str(tmp_path / "cache.sqlite3"), "hot_ttl": 1}
    if request.param == "environment":
        workdir = tmp_path / "conf"
        workdir.mkdir()
        env = {CONFIG_ENV: str(workdir / "tlspolicy.yml")}
        server = ServerProcess(fresh_lab, workdir, env=env, config_option=False, cache=cache)

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                tlspolicy_command(*args), env={**_environment(), **env},
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip

        why = f"configuration file {workdir / 'tlspolicy.yml'} ({CONFIG_ENV})"
    else:
        upper, work = tmp_path / "upper", tmp_path / "work"
        (upper / "tlspolicy").mkdir(parents=True)
        work.mkdir()
        launcher = ("unshare", "-m", "--propagation", "private", "sh", "-c", OVERLAY_ETC,
                    "sh", str(upper), str(work))  # fmt: skip
        server = ServerProcess(
            fresh_lab, upper / "tlspolicy", launcher=launcher, env={CONFIG_ENV: ""},
            config_option=False, cache=cache,
        )  # fmt: skip

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            enter = ["nsenter", "-t", str(server.process.pid), "-m"]
            return subprocess.run(
                [*enter, *tlspolicy_command(*args)], env=_environment(),
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip

        why = f"configuration file {DEFAULT_CONFIG_PATH} (the default path)"
    try:
        yield server, run, why
    finally:
        server.stop()


def test_admin_commands_without_c_use_the_servers_cache(
    started: tuple[ServerProcess, Runner, str], tmp_path: Path
) -> None:
    server, run, why = started
    assert server.postmap("sts-good.lab").value == STS_GOOD
    shown = run("cache", "show", "sts-good.lab")
    assert shown.returncode == 0, shown.stderr
    assert f"tlspolicy: {why}; cache sqlite {tmp_path / 'cache.sqlite3'}" in shown.stderr
    assert '"domain": "sts-good.lab"' in shown.stdout

    added = run("override", "add", "sts-good.lab", "may", "--until", "1h", "--reason", "test")
    assert added.returncode == 0, added.stderr
    wait_until(
        lambda: server.postmap("sts-good.lab").value == "may",
        timeout=OVERRIDE_TIMEOUT_S,
        what="the override reaching the server",
    )
    # -c in each of its three places names the same file
    for args in (
        ("-c", why.split()[2], "override", "list"),
        ("override", "-c", why.split()[2], "list"),
        ("override", "list", "-c", why.split()[2]),
    ):
        listed = run(*args)
        assert "sts-good.lab" in listed.stdout and "OK may" in listed.stdout, listed.stderr
