"""A plain install (no extras) in a fresh virtualenv is a working server.

The Redis, PostgreSQL and mail dependencies are extras: ``pip install .`` must not pull
them in, and the server it gives must answer DANE and MTA-STS keys with the SQLite cache.
The package is built from this checkout as a wheel and installed with exactly the lock's
versions by uv, from the cache that scripts/test filled (``UV_OFFLINE``): no network, and
nothing that uv.lock does not name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.server import ServerProcess, tlspolicy_command
from tests.lab.scenario import Lab

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXTRA_MODULES = ("redis", "asyncpg", "dkim", "aiosmtplib")


def _uv() -> str:
    found = os.environ.get("TLSPOLICY_UV") or str(ROOT / ".venv-uv" / "bin" / "uv")
    if not Path(found).exists():
        found = shutil.which("uv") or ""
    if not found:
        pytest.fail("uv is not installed: run scripts/test, which installs the pinned uv")
    return found


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=300, check=False, cwd=ROOT, env=env
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``uv sync --no-dev --no-editable``: the package as a wheel, no extras, the lock's pins."""
    venv = tmp_path_factory.mktemp("plain-install") / "venv"
    env = {
        **os.environ,
        "UV_OFFLINE": "1",  # from uv's cache, which scripts/test filled from the lock
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PROJECT_ENVIRONMENT": str(venv),
    }
    _run(_uv(), "sync", "--quiet", "--locked", "--no-dev", "--no-editable",
         "--python", shutil.which("python3") or "python3", env=env)  # fmt: skip
    return venv


def test_plain_install_has_no_optional_dependency(plain_venv: Path) -> None:
    python = str(plain_venv / "bin" / "python")
    probe = "import importlib.util as u, sys; print(*[m for m in sys.argv[1:] if u.find_spec(m)])"
    found = _run(python, "-c", probe, *EXTRA_MODULES).split()
    assert found == []
    assert _run(python, "-c", "import tlspolicy.cli.main") == ""


def test_plain_install_answers_dane_and_mta_sts(plain_venv: Path, lab: Lab, tmp_path: Path) -> None:
    server = ServerProcess(lab, tmp_path, python=str(plain_venv / "bin" / "python"))
    try:
        assert server.request("dane-only.lab") == "OK dane-only"
        assert server.request("sts-good.lab") == (
            "OK secure match=mx1.sts-good.lab:mx2.sts-good.lab servername=hostname"
        )
    finally:
        assert server.stop() == 0, server.log()


MISSING_EXTRAS: list[tuple[dict[str, object], str, str]] = [
        ({"cache": {"backend": "redis", "url": "redis://127.0.0.1:1/0"}}, "cache.backend",
         "redis"),
        ({"cache": {"backend": "postgres", "url": "postgresql://x@127.0.0.1:1/x"}},
         "cache.backend", "postgres"),
        ({"tlsrpt": {"reporter": True, "submitter": "mx.example.net"}}, "tlsrpt.mail_reports",
         "mail"),
]  # fmt: skip


@pytest.mark.parametrize("case", MISSING_EXTRAS, ids=lambda case: case[2])
def test_plain_install_names_the_missing_extra(
    plain_venv: Path, lab: Lab, tmp_path: Path, case: tuple[dict[str, object], str, str]
) -> None:
    section, key, extra = case
    config = lab.write_config(tmp_path / "tlspolicy.yml", **section)
    python = str(plain_venv / "bin" / "python")
    for command in (("check-config",), ("serve",)):
        done = subprocess.run(
            tlspolicy_command(*command, "-c", str(config), python=python),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 78, (command, done.stderr)
        assert key in done.stderr, done.stderr
        assert f"[{extra}]" in done.stderr, done.stderr
