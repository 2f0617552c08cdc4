"""Operations end to end: metrics, health, socket activation, privilege drop, reload."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

import tlspolicy
from tests.integration.server import ServerProcess, read_netstring, tlspolicy_command
from tests.lab.netutil import free_port
from tests.lab.postfix import postmap_query, socketmap_inet
from tests.lab.scenario import Lab

pytestmark = pytest.mark.integration


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def metrics_server(start_server: Any, **overrides: Any) -> tuple[ServerProcess, str]:
    port = free_port(udp=False)
    server_cfg = {"metrics_listen": f"127.0.0.1:{port}", **overrides.pop("server", {})}
    listen = {"listen": [f"127.0.0.1:{free_port(udp=False)}"]}
    server = start_server(server={**listen, **server_cfg}, **overrides)
    return server, f"http://127.0.0.1:{port}"


def test_ops_metrics_count_known_queries(start_server: Any) -> None:
    server, base = metrics_server(start_server)
    assert server.request("sts-good.lab").startswith("OK secure")
    assert server.request("sts-good.lab").startswith("OK secure")
    assert server.request("dane-only.lab") == "OK dane-only"
    assert server.request("plain.lab") == "NOTFOUND "
    assert server.request("bogus.lab").startswith("TEMP ")
    assert server.request("x.lab", "NOPE").startswith("PERM ")
    status, text = http_get(base + "/metrics")
    assert status == 200
    lines = set(text.splitlines())
    assert 'tlspolicy_queries_total{answer="secure",map="QUERY"} 2.0' in lines
    assert 'tlspolicy_queries_total{answer="dane-only",map="QUERY"} 1.0' in lines
    assert 'tlspolicy_queries_total{answer="notfound",map="QUERY"} 1.0' in lines
    assert 'tlspolicy_queries_total{answer="temp",map="QUERY"} 1.0' in lines
    assert 'tlspolicy_queries_total{answer="perm",map="other"} 1.0' in lines
    assert 'tlspolicy_cache_requests_total{layer="hot",result="hit"} 1.0' in lines
    assert any(
        line.startswith('tlspolicy_lookups_total{kind="dns",outcome="bogus"}') for line in lines
    )
    assert any(
        line.startswith('tlspolicy_lookups_total{kind="https",outcome="ok"} 1.0') for line in lines
    )
    assert any(
        line.startswith('tlspolicy_lookup_duration_seconds_count{branch="dane"}') for line in lines
    )
    assert "tlspolicy_connections 1.0" in lines
    assert "x.lab" not in text and "sts-good" not in text  # never a domain in a label


def test_ops_healthz_ok_with_validating_resolver(start_server: Any) -> None:
    server, base = metrics_server(start_server)
    status, body = wait_for(lambda: (r := http_get(base + "/healthz"))[0] == 200 and r)
    assert (status, body) == (200, "ok\n")
    _, text = http_get(base + "/metrics")
    assert "tlspolicy_resolver_validating 1.0" in text.splitlines()
    server.stop()


def test_ops_healthz_flags_non_validating_resolver(start_server: Any, lab: Lab) -> None:
    # The authoritative server answers but never sets AD: not a validating resolver.
    server, base = metrics_server(start_server, dns={"nameservers": [f"127.0.0.1:{lab.nsd_port}"]})
    _, body = wait_for(lambda: (r := http_get(base + "/healthz"))[0] == 503 and r)
    assert "AD" in body or "validat" in body
    assert "resolver" in server.log().lower()
    _, text = http_get(base + "/metrics")
    assert "tlspolicy_resolver_validating 0.0" in text.splitlines()


def test_ops_socket_activation(lab: Lab, tmp_path: Path) -> None:
    activate = shutil.which("systemd-socket-activate")
    assert activate, "systemd-socket-activate (Debian package systemd) is required"
    port = free_port(udp=False)
    config = lab.write_config(tmp_path / "tlspolicy.yml")  # its own listen address is unused
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [activate, "-l", f"127.0.0.1:{port}", *tlspolicy_command("serve", "-c", str(config))],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        result = wait_for(
            lambda: (
                (
                    r := postmap_query("dane-only.lab", socketmap_inet("127.0.0.1", port, "QUERY"))
                ).value
                == "dane-only"
                and r
            ),
            timeout=20,
        )
        assert result.value == "dane-only"
        wait_for(lambda: "socket activation" in (tmp_path / "server.log").read_text(), 10)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        log.close()


def _shared_dir(lab: Lab) -> tuple[Path, Path]:
    """A world-traversable directory (as /var/lib and /etc/ssl are on a real host) holding a
    copy of the lab CA; pytest's own temporary directories are private to root."""
    shared = Path(tempfile.mkdtemp(prefix="tlspolicy-drop-"))
    shared.chmod(0o755)
    ca_file = shared / "ca.pem"
    shutil.copy(lab.ca_file, ca_file)
    ca_file.chmod(0o644)
    return shared, ca_file


def _start_dropping(start_server: Any, shared: Path, ca_file: Path) -> ServerProcess:
    server: ServerProcess = start_server(
        server={"listen": [f"127.0.0.1:{free_port(udp=False)}"], "user": "nobody"},
        cache={"backend": "sqlite", "path": str(shared / "state" / "cache.sqlite3")},
        mta_sts={"ca_file": str(ca_file)},
    )
    return server


def test_ops_privilege_drop(start_server: Any, lab: Lab) -> None:
    assert os.geteuid() == 0, "the privilege drop test runs as root (as CI does)"
    shared, ca_file = _shared_dir(lab)
    server = _start_dropping(start_server, shared, ca_file)
    assert server.request("sts-good.lab").startswith("OK secure")
    assert server.request("dane-only.lab") == "OK dane-only"
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert set(uids) == {"65534"}
    assert (shared / "state" / "cache.sqlite3").stat().st_uid == 65534
    assert "dropped privileges to nobody" in server.log()


def test_ops_privilege_drop_changes_no_other_file(start_server: Any, lab: Lab) -> None:
    """The cache in a directory shared with other software: only its own files change
    hands (nothing is walked), and the directory keeps its owner."""
    shared, ca_file = _shared_dir(lab)
    try:
        shared.chmod(0o777)
        other = shared / "other-app.conf"
        other.write_text("not ours")
        (shared / "sub").mkdir()
        (shared / "sub" / "data").write_text("not ours either")
        server: ServerProcess = start_server(
            server={"listen": [f"127.0.0.1:{free_port(udp=False)}"], "user": "nobody"},
            cache={"backend": "sqlite", "path": str(shared / "cache.sqlite3")},
            mta_sts={"ca_file": str(ca_file)},
        )
        assert server.request("dane-only.lab") == "OK dane-only"
        assert (shared / "cache.sqlite3").stat().st_uid == 65534
        assert oct((shared / "cache.sqlite3").stat().st_mode & 0o777) == "0o600"
        for path in (shared, other, shared / "sub", shared / "sub" / "data", ca_file):
            assert path.stat().st_uid == 0, path
    finally:
        shutil.rmtree(shared)


def test_ops_unwritable_cache_directory_is_a_config_error(lab: Lab, tmp_path: Path) -> None:
    """Exit 78 (systemd does not restart), with the directory, its owner and mode and the
    fix; check-config finds it before serve would."""
    shared, ca_file = _shared_dir(lab)  # root's, 0755: nobody cannot create files in it
    try:
        config = lab.write_config(
            tmp_path / "tlspolicy.yml",
            server={"listen": [f"127.0.0.1:{free_port(udp=False)}"], "user": "nobody"},
            cache={"backend": "sqlite", "path": str(shared / "cache.sqlite3")},
            mta_sts={"ca_file": str(ca_file)},
        )
        for command in ("check-config", "serve"):
            done = subprocess.run(
                tlspolicy_command(command, "-c", str(config)),
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            output = done.stdout + done.stderr
            assert done.returncode == 78, (command, output)
            assert (
                f"cache.path: permission denied: nobody cannot create files in {shared}" in output
            )
            assert "owner root:root, mode 0755" in output
            assert f"install -d -o nobody -g nogroup -m 0750 {shared}" in output
        assert not (shared / "cache.sqlite3").exists()
    finally:
        shutil.rmtree(shared)


def _private_installation(root: Path) -> Path:
    """The installed packages and ``tlspolicy`` behind a 0700 directory, as in a clone made
    with ``mktemp -d`` or a virtualenv under /root: readable by root only."""
    site = root / "site"
    site.mkdir()
    purelib = Path(sysconfig.get_paths()["purelib"])
    for entry in purelib.iterdir():
        if entry.suffix != ".pth" and entry.name != "__pycache__":
            (site / entry.name).symlink_to(entry)
    package = Path(tlspolicy.__file__).parent
    if not (site / "tlspolicy").exists():
        (site / "tlspolicy").symlink_to(package)
    return site


def test_ops_privilege_drop_with_private_installation(
    start_server: Any, lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Modules loaded lazily on first use (dnspython's asyncio backend, rdata classes, the
    # IDNA codec) must be loaded before the drop: afterwards "nobody" cannot read them.
    private = Path(tempfile.mkdtemp(prefix="tlspolicy-private-"))
    assert private.stat().st_mode & 0o777 == 0o700
    try:
        monkeypatch.setenv("PYTHONPATH", str(_private_installation(private)))
        shared, ca_file = _shared_dir(lab)
        server = _start_dropping(start_server, shared, ca_file)
        assert server.request("sts-good.lab").startswith("OK secure")
        assert server.request("dane-only.lab") == "OK dane-only"
        assert server.request("dane-only.lab", "QUERYwithTLSRPT") == "OK dane-only"
        assert server.request("xn--bcher-kva.lab") == "NOTFOUND "
        assert server.request("b\u00fccher.lab") == "NOTFOUND "
        assert server.request("bogus.lab").startswith("TEMP ")
        log = server.log()
        assert "dropped privileges to nobody" in log
        assert str(private) in log  # named as not readable by the server user
        assert "imported after the privilege drop" not in log, log
        assert "internal error" not in log
    finally:
        shutil.rmtree(private)


def test_ops_privilege_drop_refuses_unreadable_ca_file(start_server: Any, lab: Lab) -> None:
    shared, ca_file = _shared_dir(lab)
    ca_file.chmod(0o600)  # root's only
    with pytest.raises(RuntimeError) as excinfo:
        _start_dropping(start_server, shared, ca_file)
    message = str(excinfo.value)
    assert "server.user nobody cannot use what the server needs" in message
    assert f"mta_sts.ca_file {ca_file} is not readable" in message


def test_ops_sighup_applies_live_keys_and_names_the_rest(start_server: Any) -> None:
    """A reload applies mta_sts.allow_private_addresses at once (the lab's policy hosts are
    on loopback: refused after it) and names the keys that need a restart instead of
    claiming them reloaded."""
    server = start_server(server={"metrics_listen": f"127.0.0.1:{free_port(udp=False)}"})
    assert server.request("sts-good.lab").startswith("OK secure")
    data = yaml.safe_load(server.config_path.read_text())
    data["mta_sts"]["allow_private_addresses"] = False
    data["dns"]["nameservers"] = ["127.0.0.1:1"]
    data["dns"]["selfcheck_bogus_name"] = "sts-good.lab"
    server.config_path.write_text(yaml.safe_dump(data))
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "need a restart" in server.log())
    log = server.log()
    assert "applied dns.selfcheck_bogus_name, mta_sts.allow_private_addresses" in log
    assert "need a restart to take effect (systemctl restart tlspolicy): dns.nameservers" in log
    assert server.request("sts-testing.lab") == "NOTFOUND "  # its fetch is refused now
    assert "private-address" in server.log()
    listen = data["server"]["metrics_listen"]
    try:  # 503 by now: the new bogus name resolves, so the resolver "does not validate"
        with urllib.request.urlopen(f"http://{listen}/healthz?format=json", timeout=10) as got:
            body = got.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    assert yaml.safe_load(body)["restart_needed"] == ["dns.nameservers"]


def test_ops_sighup_reload_maps_and_refuses_broken_config(start_server: Any) -> None:
    server = start_server()
    sock = socket.create_connection((server.host, server.port), timeout=30)

    def ask(name: str, key: str = "dane-only.lab") -> str:
        payload = f"{name} {key}".encode()
        sock.sendall(b"%d:%s," % (len(payload), payload))
        return read_netstring(sock).decode()

    assert ask("NEWMAP") == "PERM unknown map NEWMAP"
    data = yaml.safe_load(server.config_path.read_text())
    data["maps"] = {"QUERY": {}, "NEWMAP": {"tlsrpt": True}}
    server.config_path.write_text(yaml.safe_dump(data))
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in server.log())
    assert ask("NEWMAP") == "OK dane-only"  # same connection, kept across the reload

    server.config_path.write_text("dns: {timeout: -1}\n")
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in server.log())
    assert "dns.timeout: must be a positive number" in server.log()
    assert ask("NEWMAP") == "OK dane-only"
    assert server.process.poll() is None
    sock.close()
