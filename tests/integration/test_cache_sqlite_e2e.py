"""Issue 5 end to end, the embedded cache: restarts, ``kill -9`` and damaged files.

The real ``tlspolicy serve`` on a SQLite file; DNS queries counted at the lab's Unbound and
policy fetches at the HTTPS lab (helpers in ``test_cache_e2e.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cachetools import (
    SETTLE_S,
    STS_GOOD,
    STS_HOST,
    DnsLog,
    assert_explained,
    live_answers,
)
from tests.integration.server import read_netstring
from tests.lab.netutil import wait_until
from tests.lab.postfix import PostmapKind
from tests.lab.scenario import Lab

pytestmark = pytest.mark.integration

QUIET_DNS = {"selfcheck": False}  # no resolver self-check: a restarted server sends nothing
ANSWERS = {
    "dane-only.lab": "OK dane-only",
    "dane-mixed.lab": "OK dane",
    "sts-good.lab": "OK " + STS_GOOD,
    "plain.lab": "NOTFOUND ",
}
PAGE = 4096  # SQLite's default page size
KILL_WRITERS = 6  # connections writing new domains while the server is killed
KILL_AFTER_ANSWERS = 60  # ... once this many of them were answered (and so stored)
UNUSABLE = re.compile(
    r"WARNING tlspolicy\.cache: cache file (\S+) is unusable \((.+)\); moved it to (\S+) "
    r"and started with an empty cache"
)


def _sqlite_cache(tmp_path: Path) -> dict[str, Any]:
    return {"backend": "sqlite", "path": str(tmp_path / "cache.sqlite3")}


def _integrity_and_domains(path: Path) -> tuple[str, set[str]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        check = db.execute("PRAGMA integrity_check").fetchall()
        domains = {row[0] for row in db.execute("SELECT domain FROM entries")}
    return ";".join(str(row[0]) for row in check), domains


def test_cache_sqlite_e2e_restarted_server_answers_without_lookups(
    start_server: Any, lab: Lab, tmp_path: Path
) -> None:
    dns = DnsLog.enabled(lab)
    cache = _sqlite_cache(tmp_path)
    first = start_server(cache=cache, dns=QUIET_DNS)
    for domain, reply in ANSWERS.items():
        assert first.request(domain) == reply, domain
    assert first.stop() == 0  # SIGTERM: in-flight work finishes, the cache is flushed
    fetches = lab.https.count(STS_HOST)

    mark = dns.mark()
    second = start_server(cache=cache, dns=QUIET_DNS)
    for domain, reply in ANSWERS.items():
        assert second.request(domain) == reply, domain
    assert second.postmap("sts-good.lab").value == STS_GOOD
    assert second.postmap("plain.lab").kind is PostmapKind.NOTFOUND
    time.sleep(SETTLE_S)
    assert dns.since(mark) == []  # zero DNS queries
    assert lab.https.count(STS_HOST) == fetches  # zero fetches
    assert all(live_answers(second, domain) == 0 for domain in ANSWERS)
    assert_explained(second, "dane-mixed.lab")


def test_cache_sqlite_e2e_fixed_setting_is_not_held_back_by_a_stored_failure(
    start_server: Any, lab: Lab, tmp_path: Path
) -> None:
    """A fetch refused under mta_sts.allow_private_addresses: false stores a backoff; once
    the setting is fixed and the server restarted, the domain is fetched at once (stored
    failures belong to the settings they were found under; stored policies stay)."""
    cache = _sqlite_cache(tmp_path)
    refused = start_server(cache=cache, mta_sts={"allow_private_addresses": False})
    assert refused.request("sts-good.lab") == "NOTFOUND "
    assert refused.request("dane-only.lab") == "OK dane-only"
    assert refused.stop() == 0
    fetches = lab.https.count(STS_HOST)
    fixed = start_server(cache=cache)  # the lab's default: private addresses allowed
    assert fixed.request("sts-good.lab") == "OK " + STS_GOOD
    assert lab.https.count(STS_HOST) == fetches + 1
    assert fixed.request("dane-only.lab") == "OK dane-only"
    assert live_answers(fixed, "dane-only.lab") == 0  # a stored result, kept


def test_cache_sqlite_e2e_kill_9_during_writes_leaves_a_usable_file(
    start_server: Any, lab: Lab, tmp_path: Path
) -> None:
    dns = DnsLog.enabled(lab)
    cache = _sqlite_cache(tmp_path)
    path = Path(cache["path"])
    first = start_server(cache=cache, dns=QUIET_DNS)
    assert first.request("dane-only.lab") == "OK dane-only"

    answered: list[tuple[str, str]] = []
    lock = threading.Lock()

    def writer(worker: int) -> None:
        """New (nonexistent) domains one after the other: every answer is two writes."""
        try:
            with socket.create_connection((first.host, first.port), timeout=30) as sock:
                for n in itertools.count():
                    domain = f"k{worker}-{n}.lab"
                    payload = f"QUERY {domain}".encode()
                    sock.sendall(b"%d:%s," % (len(payload), payload))
                    reply = read_netstring(sock).decode()
                    with lock:
                        answered.append((domain, reply))
        except OSError:
            return  # the server is gone

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(KILL_WRITERS)]
    for thread in threads:
        thread.start()
    wait_until(
        lambda: len(answered) >= KILL_AFTER_ANSWERS, timeout=30, what="answers before the kill"
    )
    first.process.kill()  # SIGKILL while the writers keep the server busy
    first.process.wait(10)
    for thread in threads:
        thread.join(10)
    assert {reply for _, reply in answered} == {"NOTFOUND "}
    stored_before_kill = [domain for domain, _ in answered]

    integrity, domains = _integrity_and_domains(path)
    assert integrity == "ok"
    # Each answer was sent after its entry was committed: none of them is lost.
    assert set(stored_before_kill) <= domains
    assert "dane-only.lab" in domains

    mark = dns.mark()
    second = start_server(cache=cache, dns=QUIET_DNS)
    assert UNUSABLE.search(second.log()) is None
    assert list(tmp_path.glob("cache.sqlite3.corrupt-*")) == []
    assert second.request("dane-only.lab") == "OK dane-only"
    assert second.request(stored_before_kill[0]) == "NOTFOUND "
    assert second.postmap("dane-only.lab").value == "dane-only"
    time.sleep(SETTLE_S)
    assert dns.since(mark) == []
    assert second.stop() == 0
    assert _integrity_and_domains(path)[0] == "ok"
    assert_explained(second, "dane-only.lab")


def _foreign_database(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE entries (k TEXT, v TEXT)")
        db.execute("INSERT INTO entries VALUES ('sts-good.lab', 'something else')")
        db.commit()


def _damaged_pages(path: Path) -> None:
    """A cache file of the right version whose pages were overwritten (a disk error)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE entries (domain TEXT PRIMARY KEY, data TEXT NOT NULL,"
            " keep_until REAL NOT NULL, used_at REAL NOT NULL, hits INTEGER NOT NULL)"
        )
        rows = [(f"d{i}.lab", "x" * 200) for i in range(2000)]
        db.executemany("INSERT INTO entries VALUES (?, ?, 0, 0, 0)", rows)
        db.execute("PRAGMA user_version = 1")
        db.commit()
    data = bytearray(path.read_bytes())
    data[3 * PAGE : 6 * PAGE] = os.urandom(3 * PAGE)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        pytest.param(
            lambda p: p.write_bytes(b"this is not a database\n" * 512),
            "file is not a database",
            id="garbage",
        ),
        pytest.param(_foreign_database, "foreign database (tables entries)", id="foreign-schema"),
        pytest.param(_damaged_pages, "malformed", id="damaged-pages"),
    ],
)
def test_cache_sqlite_e2e_unusable_file_moved_aside_at_start(
    start_server: Any, lab: Lab, tmp_path: Path, damage: Any, why: str
) -> None:
    cache = _sqlite_cache(tmp_path)
    path = Path(cache["path"])
    damage(path)
    original = path.read_bytes()
    server = start_server(cache=cache)

    aside = list(tmp_path.glob("cache.sqlite3.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == original  # kept for a post-mortem, untouched
    warnings = UNUSABLE.findall(server.log())
    assert len(warnings) == 1
    assert warnings[0][0] == str(path)
    assert why in warnings[0][1]
    assert warnings[0][2] == str(aside[0])

    assert server.request("sts-good.lab") == "OK " + STS_GOOD
    assert server.postmap("sts-good.lab").value == STS_GOOD
    integrity, domains = _integrity_and_domains(path)  # a new, working cache file
    assert (integrity, domains) == ("ok", {"sts-good.lab"})
    assert_explained(server, "sts-good.lab")
