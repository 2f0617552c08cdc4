"""postfix-tlspol (Go; Zuplu/postfix-tlspol on GitHub) in the scenarios it supports.

Runs only when ``bench/run`` is given its binary (``--tlspol-bin`` or ``TLSPOL_BIN``); the
benchmark never fetches or builds it (``bench/README.md`` says how to build it elsewhere).
It supports DANE and MTA-STS, so it gets the same passes as ours: startup and idle RSS,
cold passes over the DANE and the MTA-STS domains at C=1 (fresh server) and C=16 (another
fresh server), then the hot passes over both on that server. Its figures go under the
``tlspol`` keys (``startup.tlspol``, ``cold.tlspol_sts_c1``, ``hot.tlspol_dane_c16``, ...).

Its replies are ``OK dane-only`` for a DANE domain and ``OK secure match=mx1...:mx2...
servername=hostname`` for an MTA-STS domain: the same markers as ours.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from bench import servers

if TYPE_CHECKING:
    from bench.scenarios import Bench

NAME = "postfix-tlspol"
LOG_LEVELS = ("debug", "info", "warn", "error")
# Its default, info, writes one line per answered query (to the log file here); ours logs no
# line per query, so the benchmark compares the two without (``--tlspol-log-level info``
# measures its default).
DEFAULT_LOG_LEVEL = "warn"
DANE_MARKER = "OK dane-only"
STS_MARKER = "OK secure match="


def version(binary: Path) -> str:
    """``postfix-tlspol -version`` prints ``postfix-tlspol v1.2.3``."""
    done = subprocess.run([str(binary), "-version"], check=True, capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    return done.stdout.strip().removeprefix(NAME).strip().removeprefix("v") or "unknown"


def check_binary(path: str) -> Path:
    binary = Path(path).resolve()
    if not binary.is_file() or not binary.stat().st_mode & 0o111:
        raise SystemExit(f"bench/run: postfix-tlspol binary {path!r} is not an executable file")
    return binary


def server(bench: Bench, tag: str) -> servers.ServerProcess:
    assert bench.opts.tlspol_bin is not None
    return servers.tlspol(
        bench.work,
        tag,
        bench.opts.server_core,
        binary=Path(bench.opts.tlspol_bin),
        resolver=bench.lab.resolver,
        resolver_address=bench.lab.peer_resolver,
        ca_file=bench.lab.ca_file,
        log_level=bench.opts.tlspol_log_level,
    )


def startup(bench: Bench) -> None:
    bench.startup_of("tlspol", lambda tag: server(bench, tag))


def cold_latency(bench: Bench) -> None:
    """C=1 cold passes on a fresh server, MTA-STS then DANE (as ours)."""
    dane = bench.keys("dane", bench.lab.dane_domains)
    sts = bench.keys("sts", bench.lab.sts_domains)
    out = bench.results.setdefault("cold", {})
    one_server = server(bench, "cold1")
    try:
        one_server.start(bench.probe_key())
        one = bench.cold(one_server, sts, "cold MTA-STS (tlspol)", 1)
        bench.expect(one, STS_MARKER, "tlspol cold MTA-STS C=1")
        out["tlspol_sts_c1"] = one.summary()
        bench.results.setdefault("rss", {})["tlspol_after_sts_kib"] = one_server.rss_kib()
        one = bench.cold(one_server, dane, "cold DANE (tlspol)", 1)
        bench.expect(one, DANE_MARKER, "tlspol cold DANE C=1")
        out["tlspol_dane_c1"] = one.summary()
    finally:
        one_server.stop()


def cold_and_hot(bench: Bench) -> None:
    """C=16 cold passes on a fresh server, then the hot passes over the cached domains."""
    dane = bench.keys("dane", bench.lab.dane_domains)
    sts = bench.keys("sts", bench.lab.sts_domains)
    cold = bench.results.setdefault("cold", {})
    hot = bench.results.setdefault("hot", {})
    hot_server = server(bench, "hot")
    try:
        hot_server.start(bench.probe_key())
        one = bench.cold(hot_server, dane, "cold DANE (tlspol)", 16)
        bench.expect(one, DANE_MARKER, "tlspol cold DANE C=16")
        cold["tlspol_dane_c16"] = one.summary()
        one = bench.cold(hot_server, sts, "cold MTA-STS (tlspol)", 16)
        bench.expect(one, STS_MARKER, "tlspol cold MTA-STS C=16")
        cold["tlspol_sts_c16"] = one.summary()
        for c in bench.opts.connections:
            hot[f"tlspol_sts_c{c}"] = bench.hot(hot_server, sts, "hot MTA-STS (tlspol)", c)
        for c in bench.opts.connections:
            hot[f"tlspol_dane_c{c}"] = bench.hot(hot_server, dane, "hot DANE (tlspol)", c)
        bench.results.setdefault("rss", {})["tlspol_after_hot_kib"] = hot_server.rss_kib()
    finally:
        hot_server.stop()


STEPS = {"startup": startup, "cold": cold_latency, "hot": cold_and_hot}
