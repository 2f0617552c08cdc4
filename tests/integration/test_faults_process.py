"""Fault matrix, process: signals to the real server while persistent connections load it.

SIGHUP under load: 0 errors, 0 wrong answers, connections kept. SIGTERM under load: every
request the server has read is answered (also the slow ones waiting for a policy fetch),
then connections close and the exit status is 0; a request still unread in a socket buffer
gets a closed connection, which Postfix retries on a new one. ``kill -9`` during writes and
a restart on the same file: ``test_cache_sqlite_e2e_kill_9_during_writes_leaves_a_usable_file``.
"""

from __future__ import annotations

import signal
import socket
import threading
from typing import Any

import pytest

from tests.integration.cachetools import STS_GOOD
from tests.integration.faultload import running_load
from tests.integration.server import read_netstring
from tests.lab.https import Behavior
from tests.lab.netutil import wait_until
from tests.lab.scenario import Lab

pytestmark = pytest.mark.integration

ANSWERS = {
    "dane-only.lab": "OK dane-only",
    "dane-mixed.lab": "OK dane",
    "plain.lab": "NOTFOUND ",
    "nullmx.lab": None,  # filled from the server's first answer
}
RELOADS = 3
SLOW_CONNECTIONS = 6
SLOW_HEAD_S = 1.5  # the policy host's delay: long enough for SIGTERM to land meanwhile
WAIT_S = 20.0


def _answers(server: Any) -> dict[str, str]:
    known = {d: a for d, a in ANSWERS.items() if a is not None}
    known["nullmx.lab"] = server.request("nullmx.lab")
    for domain, answer in known.items():
        assert server.request(domain) == answer, domain
    return known


def test_fault_process_sighup_under_load_no_errors(start_server: Any) -> None:
    server = start_server()
    with running_load(server, _answers(server), connections=16) as load:
        for n in range(1, RELOADS + 1):
            server.process.send_signal(signal.SIGHUP)
            wait_until(lambda n=n: server.log().count("configuration reloaded") >= n,  # type: ignore[misc]
                       timeout=WAIT_S, what=f"reload {n}")  # fmt: skip
            load.wait_answers(300)
    assert load.wrong == [] and load.errors == [], (load.wrong[:5], load.errors[:5])
    assert server.process.poll() is None


def test_fault_process_sigterm_under_load_answers_what_it_read(
    start_server: Any, fresh_lab: Lab
) -> None:
    host = "mta-sts.sts-good.lab"
    body = fresh_lab.https.get(host).body  # type: ignore[union-attr]
    fresh_lab.https.set(host, Behavior(body=body, head_delay=SLOW_HEAD_S))
    server = start_server()
    slow: list[str] = []
    tails: list[bytes] = []
    lock = threading.Lock()

    def ask_slow() -> None:
        with socket.create_connection((server.host, server.port), timeout=WAIT_S) as sock:
            sock.sendall(b"18:QUERY sts-good.lab,")
            reply = read_netstring(sock).decode()
            tail = sock.recv(10)
            with lock:
                slow.append(reply)
                tails.append(tail)

    with running_load(server, _answers(server), connections=16) as load:
        threads = [threading.Thread(target=ask_slow) for _ in range(SLOW_CONNECTIONS)]
        for thread in threads:
            thread.start()
        wait_until(lambda: fresh_lab.https.count(host) >= 1, timeout=WAIT_S,
                   what="the slow policy fetch under way")  # fmt: skip
        server.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(WAIT_S)
        assert server.process.wait(WAIT_S) == 0
    assert slow == ["OK " + STS_GOOD] * SLOW_CONNECTIONS  # all read before SIGTERM: answered
    assert tails == [b""] * SLOW_CONNECTIONS  # then closed
    assert load.wrong == []
    # Fast connections: each ends at most once, with a request the server had not read
    # (EOF or reset before its reply) or could not be sent any more (broken pipe).
    ends = ("closed before a reply", "Errno 104", "Errno 32")
    closed = [e for e in load.errors if any(end in e for end in ends)]
    assert len(closed) == len(load.errors) <= 16, load.errors
    assert "Traceback" not in server.log()
