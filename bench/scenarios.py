"""The benchmark scenarios of issue 6; each adds its figures to ``Bench.results``.

Every server is started fresh for the scenario that needs it (an empty cache is "cold"),
pinned to ``server_core``; the generator, the lab daemons and this process use ``load_core``.
Passes are bounded in count and time (``load.run_load``).
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import dnscount, fill, load, servers, system
from bench.lab import BOGUS_CANARY, SECURE_CANARY, BenchLab, dane_domain, fill_domain, sts_domain

IDLE_SETTLE_S = 2.0  # after the first answer, before idle RSS is read
FILL_SETTLE_S = 2.0  # after a fill pass, before RSS is read
COLD_TIMEOUT_MS = 30_000  # one cold answer may take this long before it counts as failed
HOT_TIMEOUT_MS = 5_000
COLD_BOUND_S = 600.0  # the time bound of one cold pass (count bounds it first)
PROFILE_MAX_S = 600
PROFILE_DOMAINS = 1000  # of each kind, for the profiled cold passes
TEMP_KEYS = 64  # distinct domains asked while the resolver is a blackhole
BACKENDS = ("memory", "sqlite", "redis", "postgres")
TEMPLATE_DOMAINS = (dane_domain(0), sts_domain(0))  # the real entries the memory fill clones


@dataclass
class Options:
    n: int = 2000
    fill: int = 100_000
    fill_first: int = 10_000
    hot_seconds: float = 5.0
    repeats: int = 3
    backend_domains: int = 500
    connections: tuple[int, ...] = (1, 16, 64)
    scenarios: frozenset[str] = frozenset()
    peer: bool = True
    profile: bool = True
    server_core: int = 0
    load_core: int = 1
    temp_dns_timeout: float = 1.0
    tlspol_bin: str | None = None  # postfix-tlspol's binary; None: not measured (tlspol.py)
    tlspol_log_level: str = "warn"


@dataclass
class Bench:
    opts: Options
    lab: BenchLab
    work: Path
    results: dict[str, Any] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    _probe: int = 0

    # --- helpers -----------------------------------------------------------------------

    def keys(self, name: str, domains: list[str]) -> Path:
        return self.lab.write_keys(self.work / f"{name}.keys", domains)

    def probe_key(self) -> str:
        """A fresh name for each start: the first answer is a real (cheap) lookup."""
        self._probe += 1
        return fill_domain(10_000_000 + self._probe)

    def ours(
        self, tag: str, cache: dict[str, Any] | None = None, **kw: Any
    ) -> servers.ServerProcess:
        config: dict[str, Any] = {
            "nameserver": self.lab.resolver,
            "ca_file": self.lab.ca_file,
            "secure_canary": SECURE_CANARY,
            "bogus_canary": BOGUS_CANARY,
            "cache": cache or {"backend": "sqlite", "path": str(self.work / f"{tag}.sqlite3")},
        }
        config.update(kw)
        return servers.ours(self.work, tag, self.opts.server_core, **config)

    def peer(self, tag: str) -> servers.ServerProcess:
        return servers.peer(
            self.work,
            tag,
            self.opts.server_core,
            resolver_address=self.lab.peer_resolver,
            ca_file=self.lab.ca_file,
            cache_size=max(10_000, 2 * self.opts.n),
        )

    def run(self, server: servers.ServerProcess, keyfile: Path, label: str, c: int,
            **kw: Any) -> load.Pass:  # fmt: skip
        one = load.run_load(
            server, keyfile, label=label, core=self.opts.load_core,
            server_core=self.opts.server_core, connections=c, **kw,
        )  # fmt: skip
        s = one.summary()
        lat = s["lat_us"]
        print(
            f"  {label:<34} C={c:<3} {s['qps']:>9.1f} q/s  p50 {lat['p50']:>7} µs  "
            f"p99 {lat['p99']:>8} µs  {_counts_text(s)}  server CPU {s['server_cpu_share']:.0%}"
            f"  other on its core {s['other_cpu_share_on_server_core']:.0%}"
            f"  loadgen CPU {s['loadgen_cpu_share']:.0%}",
            flush=True,
        )
        return one

    def cold(self, server: servers.ServerProcess, keyfile: Path, label: str, c: int) -> load.Pass:
        count = sum(1 for _ in keyfile.read_text().splitlines())
        replies = self.work / f"{label.replace(' ', '_')}-c{c}-{server.name}.replies"
        asked = dnscount.resolver_queries(self.lab)
        one = self.run(
            server, keyfile, label, c, count=count, duration=COLD_BOUND_S,
            timeout_ms=COLD_TIMEOUT_MS, replies=replies,
        )  # fmt: skip
        one.dns_queries = dnscount.resolver_queries(self.lab) - asked
        print(f"  {label}: {one.dns_queries / max(one.keys, 1):.2f} DNS queries per domain")
        return one

    def hot(
        self, server: servers.ServerProcess, keyfile: Path, label: str, c: int
    ) -> dict[str, Any]:
        """``repeats`` passes; the fastest is reported (interference only ever slows a pass)."""
        passes = [
            self.run(server, keyfile, label, c, duration=self.opts.hot_seconds,
                     timeout_ms=HOT_TIMEOUT_MS)
            for _ in range(self.opts.repeats)
        ]  # fmt: skip
        chosen = max(passes, key=lambda p: p.qps).summary()
        chosen["all_qps"] = [round(p.qps, 1) for p in passes]
        return chosen

    def expect(self, one: load.Pass, marker: str, what: str) -> None:
        """Every answer of a cold pass must contain ``marker``; note the exceptions."""
        if one.replies is None:
            return
        lines = one.replies.read_text().splitlines()
        wrong = [line for line in lines if marker not in line.split("\t", 1)[-1]]
        if wrong or one.failures or len(lines) != one.keys:
            self.checks.append(
                f"{what}: {len(wrong)} of {len(lines)} answers lack {marker!r}, "
                f"{one.failures} failed, {one.keys} asked; e.g. {wrong[:3]}"
            )

    def profile(self, server: servers.ServerProcess, name: str,
                work: Callable[[], object]) -> None:  # fmt: skip
        """Record the server with py-spy while ``work`` runs; store the top frames."""
        raw = self.work / f"profile-{name}.txt"
        spy = system.start_profile(server.pid, PROFILE_MAX_S, raw, self.opts.load_core)
        time.sleep(0.5)  # let py-spy attach before the load starts
        try:
            work()
        finally:
            spy.send_signal(signal.SIGINT)
            _, err = spy.communicate(timeout=60)
        if not raw.exists():
            self.checks.append(f"py-spy {name}: no profile written: {err.decode()[-500:]}")
            return
        self.results.setdefault("profiles", {})[name] = system.summarize_profile(raw)

    # --- scenarios ---------------------------------------------------------------------

    def startup(self) -> None:
        """Spawn to first answer, and RSS once idle, median of ``repeats`` fresh starts."""
        self.startup_of("ours", self.ours)
        if self.opts.peer:
            self.startup_of("peer", self.peer)

    def startup_of(self, who: str, make: Callable[[str], servers.ServerProcess]) -> None:
        runs = []
        for i in range(max(self.opts.repeats, 1)):
            server = make(f"startup{i}")
            try:
                started = server.start(self.probe_key())
                if who == "peer":
                    log = server.log.read_text(errors="replace")
                    self.results["peer_event_loop"] = (
                        "uvloop" if "uvloop enabled" in log else "asyncio"
                    )
                time.sleep(IDLE_SETTLE_S)
                runs.append((started.answer_s, started.listen_s, server.rss_kib()))
            finally:
                server.stop()
        self.results.setdefault("startup", {})[who] = {
            "first_answer_ms": round(statistics.median(r[0] for r in runs) * 1000, 1),
            "listening_ms": round(statistics.median(r[1] for r in runs) * 1000, 1),
            "idle_rss_kib": int(statistics.median(r[2] for r in runs)),
            "runs": [[round(a * 1000, 1), round(b * 1000, 1), r] for a, b, r in runs],
        }
        print(f"  startup {who}: {self.results['startup'][who]}", flush=True)

    def cold_latency(self) -> None:
        """C=1 cold passes on fresh servers: the latency of one uncached answer."""
        dane, sts = self.keys("dane", self.lab.dane_domains), self.keys("sts", self.lab.sts_domains)
        out = self.results.setdefault("cold", {})
        server = self.ours("cold1")
        try:
            server.start(self.probe_key())
            one = self.cold(server, sts, "cold MTA-STS", 1)
            self.expect(one, "OK secure match=", "ours cold MTA-STS C=1")
            out["ours_sts_c1"] = one.summary()
            self.results.setdefault("rss", {})["ours_after_sts_kib"] = server.rss_kib()
            one = self.cold(server, dane, "cold DANE", 1)
            self.expect(one, "OK dane-only", "ours cold DANE C=1")
            out["ours_dane_c1"] = one.summary()
        finally:
            server.stop()
        if not self.opts.peer:
            return
        server = self.peer("cold1")
        try:
            server.start(self.probe_key())
            one = self.cold(server, sts, "cold MTA-STS (peer)", 1)
            self.expect(one, "OK secure match=", "peer cold MTA-STS C=1")
            out["peer_sts_c1"] = one.summary()
            self.results.setdefault("rss", {})["peer_after_sts_kib"] = server.rss_kib()
        finally:
            server.stop()

    def cold_and_hot(self) -> None:
        """C=16 cold passes on a fresh server, then hot passes over the cached domains."""
        dane, sts = self.keys("dane", self.lab.dane_domains), self.keys("sts", self.lab.sts_domains)
        cold, hot = self.results.setdefault("cold", {}), self.results.setdefault("hot", {})
        bound = len(self.opts.connections) * self.opts.repeats * (self.opts.hot_seconds + 5) + 60
        server = servers.floor(self.work, self.opts.server_core, bound, load.BINARY)
        try:
            server.start(self.probe_key())
            for c in self.opts.connections:
                hot[f"floor_c{c}"] = self.hot(server, sts, "floor: C responder", c)
        finally:
            server.stop()
        server = self.ours("hot")
        try:
            server.start(self.probe_key())
            one = self.cold(server, dane, "cold DANE", 16)
            self.expect(one, "OK dane-only", "ours cold DANE C=16")
            cold["ours_dane_c16"] = one.summary()
            one = self.cold(server, sts, "cold MTA-STS", 16)
            self.expect(one, "OK secure match=", "ours cold MTA-STS C=16")
            cold["ours_sts_c16"] = one.summary()
            for c in self.opts.connections:
                hot[f"ours_sts_c{c}"] = self.hot(server, sts, "hot MTA-STS", c)
            for c in self.opts.connections:
                hot[f"ours_dane_c{c}"] = self.hot(server, dane, "hot DANE", c)
            self.results.setdefault("rss", {})["ours_after_hot_kib"] = server.rss_kib()
        finally:
            server.stop()
        if self.opts.profile:
            self.profiles()
        if not self.opts.peer:
            return
        server = self.peer("hot")
        try:
            server.start(self.probe_key())
            one = self.cold(server, sts, "cold MTA-STS (peer)", 16)
            self.expect(one, "OK secure match=", "peer cold MTA-STS C=16")
            cold["peer_sts_c16"] = one.summary()
            for c in self.opts.connections:
                hot[f"peer_sts_c{c}"] = self.hot(server, sts, "hot MTA-STS (peer)", c)
            self.results.setdefault("rss", {})["peer_after_hot_kib"] = server.rss_kib()
        finally:
            server.stop()

    def profiles(self) -> None:
        """py-spy on a fresh server: cold DANE, cold MTA-STS and hot MTA-STS passes, C=16.

        Separate from the measured passes: even a non-blocking py-spy slows the server.
        """
        size = min(self.opts.n, PROFILE_DOMAINS)
        dane = self.keys("profile-dane", self.lab.dane_domains[:size])
        sts = self.keys("profile-sts", self.lab.sts_domains[:size])
        server = self.ours("profile")
        try:
            server.start(self.probe_key())
            self.profile(
                server,
                "ours_cold_dane_c16",
                lambda: self.cold(server, dane, "cold DANE (profiled)", 16),
            )
            self.profile(
                server,
                "ours_cold_sts_c16",
                lambda: self.cold(server, sts, "cold MTA-STS (profiled)", 16),
            )
            self.profile(
                server,
                "ours_hot_sts_c16",
                lambda: self.run(
                    server,
                    sts,
                    "hot MTA-STS (profiled)",
                    16,
                    duration=self.opts.hot_seconds,
                    timeout_ms=HOT_TIMEOUT_MS,
                ),
            )
        finally:
            server.stop()

    def backends(self) -> None:
        """The C=16 hot pass over DANE and MTA-STS domains with each cache backend."""
        size = self.opts.backend_domains
        pairs = zip(self.lab.dane_domains[:size], self.lab.sts_domains[:size], strict=True)
        mixed = [d for pair in pairs for d in pair]
        keys = self.keys("mixed", mixed)
        out = self.results.setdefault("backends", {})
        for backend in BACKENDS:
            with servers.cache_service(backend) as service:
                cache = service or {"backend": backend}
                if backend == "sqlite":
                    cache["path"] = str(self.work / f"be-{backend}.sqlite3")
                server = self.ours(f"be-{backend}", cache)
                try:
                    server.start(self.probe_key())
                    prime = self.cold(server, keys, f"cold mixed ({backend})", 16)
                    hot = self.hot(server, keys, f"hot mixed ({backend})", 16)
                    out[backend] = {"cold_c16": prime.summary(), "hot_c16": hot}
                finally:
                    server.stop()

    def memory(self) -> None:
        """RSS holding ``fill_first`` and ``fill`` cached policies (see ``fill.py``)."""
        seed = self.ours("seed")
        try:
            seed.start(self.probe_key())
            for domain in TEMPLATE_DOMAINS:
                servers.socketmap_request(seed.port, domain)
        finally:
            seed.stop()  # flushes its cache file
        templates = fill.read_templates(self.work / "seed.sqlite3", list(TEMPLATE_DOMAINS))
        names = [fill_domain(i) for i in range(self.opts.fill)]
        started = time.monotonic()
        fill.write_clones(self.work / "memory.sqlite3", templates, names)
        out = self.results.setdefault("memory", {})
        out["clone_write_s"] = round(time.monotonic() - started, 1)
        # Clones carry the templates' check times: no TXT id re-check during the scenario.
        server = self.ours("memory", mta_sts={"recheck_interval": 3600})
        try:
            server.start(self.probe_key())
            time.sleep(IDLE_SETTLE_S)
            out["idle_rss_kib"] = server.rss_kib()
            for keys, total in [
                (names[: self.opts.fill_first], self.opts.fill_first),
                (names[self.opts.fill_first :], self.opts.fill),
            ]:
                one = self.cold(server, self.keys(f"fill-{total}", keys), f"load to {total}", 64)
                self.expect(one, "OK ", f"loading {total} cached domains")
                time.sleep(FILL_SETTLE_S)
                out[f"rss_{total}_kib"] = server.rss_kib()
                out[f"load_to_{total}"] = one.summary()
            out["peak_rss_kib"] = server.peak_rss_kib()
            out["cached_entries"] = _count_entries(server)
            out["hot_entries"] = "default"
        finally:
            server.stop()
        # The same with an in-process layer large enough for every entry: the worst case.
        everything = {"backend": "sqlite", "path": str(self.work / "memory.sqlite3"),
                      "hot_entries": self.opts.fill}  # fmt: skip
        server = self.ours("memory-all", everything, mta_sts={"recheck_interval": 3600})
        try:
            server.start(self.probe_key())
            one = self.cold(server, self.keys("fill-all", names), f"load to {self.opts.fill}", 64)
            self.expect(one, "OK ", f"loading {self.opts.fill} cached domains, all in process")
            time.sleep(FILL_SETTLE_S)
            out[f"rss_{self.opts.fill}_all_in_process_kib"] = server.rss_kib()
        finally:
            server.stop()
        print(f"  memory: { {k: v for k, v in out.items() if 'kib' in k} }", flush=True)

    def temp(self) -> None:
        """The resolver never answers: every answer must be TEMP after about dns.timeout."""
        keys = self.keys("temp", [f"t{i}.temp.bench" for i in range(TEMP_KEYS)])
        server = self.ours(
            "temp", nameserver=self.lab.blackhole, dns_timeout=self.opts.temp_dns_timeout
        )
        try:
            server.start(".probe")  # a parent-domain probe: answered without any lookup
            one = self.cold(server, keys, "TEMP (blackhole resolver)", 16)
            self.expect(one, "TEMP", "TEMP with a blackhole resolver")
            self.results["temp"] = {
                "dns_timeout_s": self.opts.temp_dns_timeout,
                **one.summary(),
            }
        finally:
            server.stop()


def _counts_text(summary: dict[str, Any]) -> str:
    counts = {k: v for k, v in summary["counts"].items() if v}
    bad = summary["timeouts"] + summary["errors"] + summary["unfinished"]
    return " ".join(f"{k}={v}" for k, v in counts.items()) + (f" FAILED={bad}" if bad else "")


def _count_entries(server: servers.ServerProcess) -> int:
    """Entries in the server's cache, through ``tlspolicy cache list`` (one line each)."""
    conf = next(a for a in server.argv if a.endswith(".yml"))
    done = subprocess.run(
        [str(servers.TLSPOLICY), "cache", "-c", conf, "list"],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return sum(1 for line in done.stdout.splitlines() if line.strip())
