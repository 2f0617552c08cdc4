"""The foundation end to end: Postfix's own client against the running server."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import ServerProcess, read_netstring, tlspolicy_command
from tests.lab.netutil import free_port
from tests.lab.postfix import PostmapKind, postmap_query
from tests.lab.scenario import Lab

pytestmark = pytest.mark.integration

STS_GOOD = "secure match=mx1.sts-good.lab:mx2.sts-good.lab servername=hostname"


def test_e2e_postmap_inet_enforce_and_dane(server: ServerProcess) -> None:
    result = server.postmap("sts-good.lab")
    assert result.kind is PostmapKind.FOUND, result
    assert result.value == STS_GOOD
    assert server.postmap("dane-only.lab").value == "dane-only"
    assert server.postmap("plain.lab").kind is PostmapKind.NOTFOUND


def test_e2e_postmap_unix_socket(start_server: Any, tmp_path: Path) -> None:
    path = tmp_path / "run" / "tlspolicy.sock"
    server = start_server(
        server={
            "listen": [f"127.0.0.1:{free_port(udp=False)}", f"unix:{path}"],
            "socket_mode": "0666",
        }
    )
    result = postmap_query("sts-good.lab", server.unix_map_spec("QUERY"))
    assert result.value == STS_GOOD
    assert oct(path.stat().st_mode & 0o777) == "0o666"


def test_e2e_postmap_keys_without_lookup(server: ServerProcess, lab: Lab) -> None:
    before = lab.https.count("mta-sts.sts-good.lab")
    for key in (".sts-good.lab", "[192.0.2.1]", "192.0.2.1", "[ipv6:2001:db8::1]"):
        assert server.postmap(key).kind is PostmapKind.NOTFOUND, key
    assert lab.https.count("mta-sts.sts-good.lab") == before


def test_e2e_postmap_next_hop_forms(server: ServerProcess) -> None:
    for key in ("STS-GOOD.LAB.", "[sts-good.lab]", "[sts-good.lab]:25", "sts-good.lab:smtp"):
        assert server.postmap(key).value == STS_GOOD, key


def test_e2e_unknown_map_is_perm(server: ServerProcess) -> None:
    assert server.request("sts-good.lab", "NOSUCHMAP") == "PERM unknown map NOSUCHMAP"
    assert server.postmap("sts-good.lab", "NOSUCHMAP").kind is PostmapKind.PERM


def test_e2e_tlsrpt_map(server: ServerProcess) -> None:
    reply = server.request("sts-good.lab", "QUERYwithTLSRPT")
    assert reply.startswith("OK " + STS_GOOD + " policy_type=sts policy_domain=sts-good.lab ")
    assert server.request("dane-only.lab", "QUERYwithTLSRPT") == "OK dane-only"


def test_e2e_exact_bytes_and_back_to_back(server: ServerProcess) -> None:
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        payloads = [b"QUERY plain.lab", b"QUERY dane-only.lab", b"QUERY .x.lab"]
        sock.sendall(b"".join(b"%d:%s," % (len(p), p) for p in payloads))
        replies = [read_netstring(sock) for _ in payloads]
    assert replies == [b"NOTFOUND ", b"OK dane-only", b"NOTFOUND "]


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"abc:QUERY x,", id="bad-length"),
        pytest.param(b"99999:", id="oversized"),
        pytest.param(b"5:QUERYX", id="missing-comma"),
    ],
)
def test_e2e_malformed_closes_only_that_connection(server: ServerProcess, garbage: bytes) -> None:
    keeper = socket.create_connection((server.host, server.port), timeout=30)
    with socket.create_connection((server.host, server.port), timeout=30) as bad:
        bad.sendall(garbage)
        assert bad.recv(100) == b""
    keeper.sendall(b"18:QUERY sts-good.lab,")
    assert read_netstring(keeper).decode() == "OK " + STS_GOOD
    keeper.close()
    assert "closing socketmap connection" in server.log()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"QUERY \xff\xfe.example", id="non-utf8"),
        pytest.param(b"QUERY " + b"a" * 63 + b"b.lab", id="overlong-label"),
        pytest.param(b"QUERY " + b".".join([b"a" * 63] * 4) + b".lab", id="overlong-name"),
    ],
)
def test_e2e_names_that_cannot_exist_are_notfound_on_the_same_connection(
    server: ServerProcess, payload: bytes
) -> None:
    # A property of the key, not of the framing: closing would make Postfix defer the mail.
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(b"%d:%s," % (len(payload), payload))
        assert read_netstring(sock) == b"NOTFOUND "
        sock.sendall(b"18:QUERY sts-good.lab,")
        assert read_netstring(sock).decode() == "OK " + STS_GOOD
    assert "closing socketmap connection" not in server.log()


def test_e2e_sigterm_finishes_in_flight_answer(start_server: Any, fresh_lab: Lab) -> None:
    from tests.lab.https import Behavior  # noqa: PLC0415

    fresh_lab.https.set(
        "mta-sts.sts-good.lab",
        Behavior(body=fresh_lab.https.get("mta-sts.sts-good.lab").body, head_delay=1.5),
    )
    server = start_server()
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(b"18:QUERY sts-good.lab,")
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        assert read_netstring(sock).decode() == "OK " + STS_GOOD
        assert sock.recv(10) == b""
    assert server.process.wait(15) == 0
    assert "stopped" in server.log()


def test_e2e_cli_query_explains(server: ServerProcess) -> None:
    human = server.cli_query("sts-good.lab")
    assert human.returncode == 0, human.stderr
    assert f"reply:    OK {STS_GOOD}" in human.stdout
    assert "_mta-sts.sts-good.lab" in human.stdout
    data = json.loads(server.cli_query("dane-only.lab", "--json").stdout)
    assert data["reply"] == "OK dane-only"
    assert data["dane"]["level"] == "dane-only"
    mx = [e for e in data["lookups"] if e["kind"] == "dns" and e.get("detail") == "MX"]
    assert mx and mx[0]["status"] == "secure" and "ttl" in mx[0] and "elapsed_ms" in mx[0]


@pytest.mark.parametrize(
    ("key", "code"),
    [
        pytest.param("sts-good.lab", 0, id="found"),
        pytest.param("plain.lab", 1, id="notfound"),
        pytest.param("bogus.lab", 75, id="tempfail"),
    ],
)
def test_e2e_cli_query_exit_status(server: ServerProcess, key: str, code: int) -> None:
    assert server.cli_query(key).returncode == code


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "dns:\n  timeout: -1\n", "dns.timeout: must be a positive number", id="timeout"
        ),
        pytest.param("dns: {timout: 1}\n", "dns.timout: unknown key", id="typo"),
        pytest.param("server:\n  listen: [nope]\n", "server.listen[0]: missing port", id="listen"),
        pytest.param(
            "maps: {Q: {tlsrpt: yes please}}\n", "maps.Q.tlsrpt: must be true or false", id="bool"
        ),
        pytest.param("dns: [\n", "tlspolicy.yml", id="yaml"),
    ],
)
def test_e2e_bad_config_is_a_clear_message(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tlspolicy.yml"
    path.write_text(text)
    done = subprocess.run(
        tlspolicy_command("serve", "-c", str(path)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 78  # EX_CONFIG
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_e2e_version() -> None:
    done = subprocess.run(
        tlspolicy_command("--version"), capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0
    assert done.stdout.startswith("tlspolicy ")


def test_e2e_cli_query_shows_the_servers_cached_answer(start_server: Any, tmp_path: Path) -> None:
    cache = {"backend": "sqlite", "path": str(tmp_path / "cache.sqlite3")}
    server = start_server(cache=cache)
    assert server.request("sts-good.lab") == "OK " + STS_GOOD
    data = json.loads(server.cli_query("sts-good.lab", "--json").stdout)
    assert data["cache"]["backend"] == "sqlite"
    assert data["cache"]["reply"] == "OK " + STS_GOOD
    assert data["cache"]["entry"]["sts"]["policy_id"]
    human = server.cli_query("plain.lab").stdout
    assert "cache:    sqlite: no entry" in human
