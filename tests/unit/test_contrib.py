"""contrib/ and the Dockerfile: files load, units verify, the dashboard matches the metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from tlspolicy.config import load_config
from tlspolicy.metrics.registry import Metrics

ROOT = Path(__file__).parents[2]
CONTRIB = ROOT / "contrib"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
PROM_FUNCS = {"sum", "rate", "increase", "histogram_quantile", "min", "max", "by", "without"}
GENERIC_LABELS = {"le", "instance", "job"}


def unit_settings(name: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (CONTRIB / name).read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("Type", "notify", id="notify"),
        pytest.param(
            "ExecStart", "/usr/local/bin/tlspolicy serve -c /etc/tlspolicy/tlspolicy.yml", id="exec"
        ),
        pytest.param("ExecReload", "/bin/kill -HUP $MAINPID", id="reload"),
        pytest.param("WatchdogSec", "30", id="watchdog"),
        pytest.param("DynamicUser", "yes", id="dynamic-user"),
        pytest.param("StateDirectory", "tlspolicy", id="state-dir"),
        pytest.param("RuntimeDirectory", "tlspolicy", id="runtime-dir"),
        pytest.param("ProtectSystem", "strict", id="protect-system"),
        pytest.param("ProtectHome", "yes", id="protect-home"),
        pytest.param("PrivateTmp", "yes", id="private-tmp"),
        pytest.param("PrivateDevices", "yes", id="private-devices"),
        pytest.param("NoNewPrivileges", "yes", id="no-new-privileges"),
        pytest.param("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX", id="address-families"),
        pytest.param("ProtectKernelTunables", "yes", id="kernel-tunables"),
        pytest.param("ProtectKernelModules", "yes", id="kernel-modules"),
        pytest.param("ProtectControlGroups", "yes", id="cgroups"),
        pytest.param("RestrictNamespaces", "yes", id="namespaces"),
        pytest.param("LockPersonality", "yes", id="personality"),
        pytest.param("MemoryDenyWriteExecute", "yes", id="mdwe"),
        pytest.param("SystemCallFilter", "@system-service", id="syscalls"),
        pytest.param("CapabilityBoundingSet", "", id="no-capabilities"),
        pytest.param("Restart", "on-failure", id="restart"),
        pytest.param("Requires", "tlspolicy.socket", id="requires-socket"),
        pytest.param("After", "tlspolicy.socket", id="after-socket"),
    ],
)
def test_contrib_service_unit_has_setting(key: str, value: str) -> None:
    assert value in unit_settings("tlspolicy.service").get(key, [])


def test_contrib_socket_unit_listens_where_postfix_is_told() -> None:
    settings = unit_settings("tlspolicy.socket")
    assert settings["ListenStream"] == ["127.0.0.1:8642"]
    assert settings["Accept"] == ["no"]  # systemd.listen_fds refuses Accept=yes sockets


def test_contrib_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None, "systemd-analyze (Debian package systemd) is required"
    # verify checks that ExecStart exists: point it at the installed entry point
    entry = Path(sys.executable).with_name("tlspolicy")
    assert entry.exists()
    service = (CONTRIB / "tlspolicy.service").read_text()
    (tmp_path / "tlspolicy.service").write_text(
        service.replace("/usr/local/bin/tlspolicy", str(entry))
    )
    shutil.copy(CONTRIB / "tlspolicy.socket", tmp_path / "tlspolicy.socket")
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "tlspolicy.socket", "tlspolicy.service"],  # type: ignore[list-item]
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.strip() == ""
    security = subprocess.run(
        [
            SYSTEMD_ANALYZE,
            "security",
            "--offline=yes",
            "--threshold=20",
            "tlspolicy.service",
        ],  # type: ignore[list-item]
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert security.returncode == 0, security.stdout[-2000:]  # exposure level at most 2.0


# Under MemoryDenyWriteExecute=yes: the kernel's equivalent (PR_SET_MDWE, Linux 6.3+) first,
# then everything the server loads and an HTTP round trip through the metrics endpoint.
MDWE_CHILD = """
import ctypes, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    print("unsupported"); sys.exit(0)
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("not enforced"); sys.exit(1)
except PermissionError:
    pass
import asyncio, importlib, pkgutil, sqlite3, ssl
import aiohttp, tlspolicy
for info in pkgutil.walk_packages(tlspolicy.__path__, "tlspolicy."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
from tlspolicy.metrics.registry import Metrics
from tlspolicy.server.http import HttpEndpoint

async def main():
    ssl.create_default_context()
    sqlite3.connect(":memory:").execute("select 1")
    endpoint = HttpEndpoint(Metrics(), lambda: (True, ""))
    name = await endpoint.start("127.0.0.1", 0)
    async with aiohttp.ClientSession() as s, s.get(f"http://{name}/metrics") as r:
        assert r.status == 200
    await endpoint.stop()
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
print("ok")
"""


def test_contrib_memory_deny_write_execute_is_safe_for_the_server() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MDWE_CHILD)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.stdout.strip() == "unsupported":
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


@pytest.mark.parametrize("name", ["tlspolicy.yml", "docker-tlspolicy.yml"])
def test_contrib_example_configs_load(name: str) -> None:
    config = load_config(str(CONTRIB / name))
    assert config.server.metrics_listen is not None
    assert config.server.user is None  # systemd DynamicUser / Docker USER do the job


def dashboard() -> dict[str, object]:
    return json.loads((CONTRIB / "grafana-dashboard.json").read_text())  # type: ignore[no-any-return]


def exprs() -> list[str]:
    found = []
    for panel in dashboard()["panels"]:  # type: ignore[attr-defined]
        for target in panel.get("targets", []):
            found.append(target["expr"])
    return found


def exposition_labels() -> dict[str, set[str]]:
    """Sample name -> label names, from a scrape of a fresh Metrics."""
    m = Metrics(map_names=["QUERY"])
    m.lookup_seconds("dane", 0.1)
    labels: dict[str, set[str]] = {}
    for line in generate_latest(m.registry).decode().splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s", line)
        assert match
        names = set(re.findall(r'(\w+)="', match.group(2) or ""))
        labels.setdefault(match.group(1), set()).update(names)
    return labels


def test_grafana_dashboard_uses_the_prometheus_input() -> None:
    dash = dashboard()
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]  # type: ignore[index]
    for panel in dash["panels"]:  # type: ignore[attr-defined]
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
    ids = [panel["id"] for panel in dash["panels"]]  # type: ignore[attr-defined]
    assert len(ids) == len(set(ids))


def test_grafana_dashboard_exprs_reference_existing_metrics_and_labels() -> None:
    known = exposition_labels()
    for expr in exprs():
        metrics = re.findall(r"\btlspolicy_\w+", expr)
        assert metrics, expr
        for name in metrics:
            assert name in known, f"{name} in {expr!r} is not exported"
        allowed = set().union(*(known[n] for n in metrics)) | GENERIC_LABELS
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            for label in (x.strip() for x in group.split(",")):
                assert label in allowed, f"label {label} in {expr!r}"
        for label in re.findall(r"(\w+)\s*(?:=~|!=|=)\s*\"", expr):
            assert label in allowed, f"label {label} in {expr!r}"


def test_grafana_dashboard_covers_every_metric() -> None:
    used = {
        re.sub(r"_(bucket|count|sum)$", "", n)
        for e in exprs()
        for n in re.findall(r"\btlspolicy_\w+", e)
    }
    # Ours; the standard process_* and python_* collectors are Prometheus' own vocabulary.
    families = {f.name for f in Metrics().registry.collect() if f.name.startswith("tlspolicy_")}
    # prometheus-client names counter families without the _total suffix
    exported = {n + "_total" if n + "_total" in used else n for n in families}
    assert exported <= used, exported - used


def test_dockerfile_is_simple_and_non_root() -> None:
    """The same layout as scripts/build-image: Debian 13, the package, a non-root user."""
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0].startswith("FROM debian:13")
    assert lines[-1] == 'CMD ["serve"]'
    assert "EXPOSE 8642 8643" in lines
    users = [line for line in lines if line.startswith("USER ")]
    assert users == ["USER _tlspolicy:_tlspolicy"]
    assert any(line.startswith("HEALTHCHECK ") for line in lines)
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                if not source.startswith("${"):  # the .deb, made by scripts/build-deb
                    assert (ROOT / source).exists(), source
