"""``tlspolicy serve``: the long-running server and its life cycle.

Order matters: listeners are bound first (socket activation, or as root for any port),
privileges are dropped, then the cache is opened as the unprivileged user, and only then
are connections accepted. SIGTERM/SIGINT stop cleanly (in-flight answers finish, listeners
close, the cache is flushed); SIGHUP reloads the configuration without dropping
connections or the cache; an invalid new configuration is refused and the old one stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from tlspolicy import __version__  # dnstransport: before the drop
from tlspolicy.config import Config, load_config
from tlspolicy.config.changes import changed_keys
from tlspolicy.dnsstub import transport as dnstransport
from tlspolicy.dnsstub.client import trust_warnings
from tlspolicy.dnsstub.selfcheck import ResolverMonitor
from tlspolicy.errors import ConfigError
from tlspolicy.metrics.sink import NullMetrics
from tlspolicy.postfix.advice import Severity, advise, read_postfix
from tlspolicy.server import systemd
from tlspolicy.server.app import App, build_app
from tlspolicy.server.binding import Handoff, worker_handoff
from tlspolicy.server.listeners import SocketmapServer
from tlspolicy.server.logsetup import setup_logging
from tlspolicy.server.privileges import (
    databases,
    drop_privileges,
    prepare_state,
    state_identity,
)
from tlspolicy.server.validation import ValidationGuard
from tlspolicy.server.warmup import preload, verify_after_drop

if TYPE_CHECKING:
    from tlspolicy.metrics.registry import Metrics
    from tlspolicy.server.http import HttpEndpoint
    from tlspolicy.tlsrpt.runtime import TlsrptRuntime

log = logging.getLogger("tlspolicy")

# What a reload applies (``App.reconfigure``, the monitor, the listeners' limits, logging);
# a key given as "section." covers the whole section. Every other key needs a restart:
# the DNS client, listeners, cache backend, privileges and TLSRPT parts are built once.
LIVE_KEYS = (
    "maps", "overrides", "dane.", "mta_sts.", "dns.selfcheck_secure_name",
    "dns.selfcheck_bogus_name", "dns.selfcheck_interval", "dns.on_validation_failure",
    "dns.trust_remote_resolver", "server.max_connections", "server.idle_timeout",
    "server.request_timeout", "server.log_level", "server.log_format",
    "cache.refresh_ahead", "cache.refresh_before",
)  # fmt: skip


def live_key(key: str) -> bool:
    return any(key == live or (live.endswith(".") and key.startswith(live)) for live in LIVE_KEYS)


# The cache size gauge is refreshed this often (a backend count is not free).
CACHE_GAUGE_INTERVAL_S = 30.0


def _metrics(config: Config) -> Metrics | NullMetrics:
    """Prometheus metrics when ``server.metrics_listen`` serves them; otherwise nobody can
    read them, and prometheus_client and aiohttp's server side are not even imported
    (their memory and start-up time are the largest share of what the default does not use).
    """
    if config.server.metrics_listen is None:
        return NullMetrics()
    from tlspolicy.metrics.registry import Metrics  # noqa: PLC0415 - imported when configured

    return Metrics(map_names=config.maps)


class Runner:
    def __init__(
        self, config: Config, config_path: str | None, handoff: Handoff | None = None
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.handoff = handoff  # set in a worker started by server/supervisor.py
        # Worker 0 (or the only process) runs what cannot be shared: metrics, TLSRPT.
        self.primary = handoff is None or handoff.slot == 0
        self.metrics = _metrics(config)
        self.server = SocketmapServer(
            self._answer,
            config.server,
            answer_now=self._answer_now,
            answer_wire=self._answer_wire,
            on_connections=self.metrics.set_connections,
            metrics=self.metrics,
        )
        # dns.on_validation_failure: checked before the service (server/validation.py).
        self.guard = ValidationGuard(
            mode=lambda: self.config.dns.on_validation_failure,
            not_validating=lambda: self.monitor is not None and self.monitor.not_validating(),
            has_profile=lambda name: self.config.profile(name) is not None,
            metrics=self.metrics,
        )
        self.app: App | None = None
        self.http: HttpEndpoint | None = None
        self.monitor: ResolverMonitor | None = None
        self.tlsrpt: TlsrptRuntime | None = None
        self.restart_needed: list[str] = []  # changed by a reload, applied by a restart
        self.tasks: list[asyncio.Task[Any]] = []
        self.cache_entries = 0.0
        self.stop_event = asyncio.Event()

    def _answer_now(self, name: str, key: str) -> str | None:
        if self.app is None:
            return None
        return self.guard.check(name, key) or self.app.answers.answer_now(name, key)

    def _answer_wire(self, request: bytes) -> bytes | None:
        app = self.app
        if app is None or not self.guard.quiet():
            return None
        return app.answers.answer_wire(request)

    async def _answer(self, name: str, key: str) -> str:
        assert self.app is not None  # connections are accepted only once the app is built
        return self.guard.check(name, key) or await self.app.answers.answer(name, key)

    async def run(self) -> int:
        started = time.monotonic()
        config = self.config
        activated = self.handoff.sockets if self.handoff else systemd.listen_fds()
        names = await self.server.start(
            [] if activated else None, sockets=activated, start_serving=False
        )
        self.app = await build_app(config, metrics=self.metrics, open_cache=False)
        if self.primary and config.tlsrpt.in_use:
            # Imported only when used (about 10 % of the start-up's imports otherwise),
            # and here: before privileges are dropped.
            from tlspolicy.tlsrpt.runtime import TlsrptRuntime  # noqa: PLC0415

            tlsrpt = TlsrptRuntime(config, dns=self.app.dns, metrics=self.metrics)
            tlsrpt.bind()  # the collector socket, before privileges are dropped
            self.tlsrpt = tlsrpt
        self._drop_privileges()
        await self.app.cache.open()
        if self.tlsrpt is not None:
            await self.tlsrpt.start()
        self.metrics.set_cache_entries_source(lambda: self.cache_entries)
        await self.app.service.start()
        await self._start_http()
        self._start_monitor()
        for warning in self.resolver_warnings():
            log.warning("%s", warning)
        await self.server.begin()
        self._worker_ready()
        self.tasks.append(asyncio.create_task(self._cache_gauges(), name="cache-gauges"))
        interval = systemd.watchdog_interval()
        if interval is not None:
            self.tasks.append(asyncio.create_task(systemd.watchdog_loop(interval)))
        log.info(
            "tlspolicy %s listening on %s%s (cache %s, maps %s) in %.0f ms",
            __version__,
            ", ".join(names),
            f" (worker {self.handoff.slot}, pid {os.getpid()})"
            if self.handoff
            else " (socket activation)"
            if activated
            else "",
            config.cache.backend,
            ", ".join(config.maps),
            (time.monotonic() - started) * 1000,
        )
        systemd.notify_ready(f"listening on {', '.join(names)}")
        self.tasks.append(asyncio.create_task(self._advise_postfix(), name="postfix-check"))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        if self.handoff is None:  # SIGUSR2 restarts the workers of a supervisor only
            loop.add_signal_handler(signal.SIGUSR2, _no_rolling_restart)
        await self.stop_event.wait()
        await self.shutdown()
        return 0

    def _worker_ready(self) -> None:
        """Report "accepting" to the supervisor; stop when it goes away (lifeline EOF)."""
        if self.handoff is None:
            return
        self.handoff.ready()
        fd = self.handoff.life_fd
        loop = asyncio.get_running_loop()

        def lifeline() -> None:
            loop.remove_reader(fd)
            log.warning("supervisor gone: stopping")
            self.stop_event.set()

        loop.add_reader(fd, lifeline)

    def _drop_privileges(self) -> None:
        cfg = self.config
        identity = state_identity(cfg)
        stores = databases(cfg, tlsrpt=cfg.tlsrpt.in_use)
        prepare_state(stores, identity, group_mode=cfg.server.group is not None)
        if identity is None:
            if cfg.server.user is not None:
                log.warning("not running as root: server.user %s ignored", cfg.server.user)
            return
        dirs = preload(cfg)
        drop_privileges(cfg.server.user, cfg.server.group)  # logs what it did
        verify_after_drop(cfg, dirs)

    async def _start_http(self) -> None:
        listen = self.config.server.metrics_listen
        if listen is None or not self.primary:
            return
        from tlspolicy.metrics.registry import Metrics  # noqa: PLC0415 - see _metrics
        from tlspolicy.server.http import HttpEndpoint  # noqa: PLC0415

        assert isinstance(self.metrics, Metrics)  # _metrics: a listener means Prometheus
        self.http = HttpEndpoint(self.metrics, self.health, self.health_detail)
        host, _, port = listen.rpartition(":")
        where = await self.http.start(host.strip("[]"), int(port))
        log.info("metrics and health on http://%s/metrics and /healthz", where)

    async def _advise_postfix(self) -> None:
        """Log whether the maps the Postfix beside us uses fit its version (postfix.py)."""
        cfg = self.config.postfix
        if not cfg.postconf:
            return
        facts = await asyncio.to_thread(read_postfix, cfg.postconf, cfg.config_directory)
        if facts is None:
            log.debug("no postconf to ask (%s): Postfix version not checked", cfg.postconf)
            return
        levels = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING}
        for item in advise(facts, self.config.maps):
            log.log(levels.get(item.severity, logging.ERROR), "%s", item.text)

    def _dns_trusted(self) -> bool:
        return self.monitor is None or not self.monitor.not_validating()

    def _start_monitor(self) -> None:
        dns = self.config.dns
        if not dns.selfcheck or self.app is None:
            return
        self.app.service.lookups.dns_trusted = self._dns_trusted
        self.monitor = ResolverMonitor(
            self.app.dns,
            secure_name=dns.selfcheck_secure_name,
            bogus_name=dns.selfcheck_bogus_name,
            interval=dns.selfcheck_interval,
            metrics=self.metrics,
        )
        # In the background: a slow or dead resolver must not delay the first answer.
        self.tasks.append(asyncio.create_task(self.monitor.start(), name="resolver-check"))

    def health(self) -> tuple[bool, str]:
        """/healthz: listeners up, cache backend answering, resolver validating."""
        if not self.server.listening:
            return False, "socketmap listeners are not up"
        if self.app is None:
            return False, "starting"
        if not self.app.cache.healthy:
            return False, f"cache backend unavailable: {self.app.cache.outage_reason}"
        if self.monitor is not None and not self.monitor.status.ok:
            return False, self.monitor.status.reason
        return True, "ok"

    def health_detail(self) -> dict[str, Any]:
        """/healthz?format=json: operator overrides that weaken DANE/MTA-STS domains, why
        the resolver's DNSSEC status may not deserve trust, and which changed keys wait for
        a restart."""
        if self.app is None:
            return {}
        return {
            "weakening_overrides": self.app.service.weakening_overrides(),
            "resolver_warnings": self.resolver_warnings(),
            "restart_needed": list(self.restart_needed),
        }

    def resolver_warnings(self) -> list[str]:
        dns = self.config.dns
        return trust_warnings(dns.nameservers, trust_remote=dns.trust_remote_resolver)

    async def _cache_gauges(self) -> None:
        while True:
            if self.app is not None:
                cache = self.app.cache
                self.metrics.set_cache_backend_up(cache.healthy)
                if cache.healthy:
                    with contextlib.suppress(Exception):
                        self.cache_entries = float(await cache.count())
            await asyncio.sleep(CACHE_GAUGE_INTERVAL_S)

    def reload(self) -> None:
        """SIGHUP: apply every changed key that can change live (``LIVE_KEYS``), and name
        the others, which wait for a restart (logged, and in /healthz?format=json)."""
        systemd.notify_reloading()
        try:
            new = load_config(self.config_path)
            if self.app is not None:
                self.app.reconfigure(new)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            systemd.notify_ready("reload refused")
            return
        changed = changed_keys(self.config, new)
        if self.monitor is not None:
            dns = new.dns
            self.monitor.reconfigure(
                secure_name=dns.selfcheck_secure_name, bogus_name=dns.selfcheck_bogus_name,
                interval=dns.selfcheck_interval,
            )  # fmt: skip
        self.server.config = new.server
        self.config = new
        setup_logging(new.server.log_level, new.server.log_format)
        pending = [key for key in changed if not live_key(key)]
        self.restart_needed = sorted({*self.restart_needed, *pending})
        applied = [key for key in changed if live_key(key)]
        log.info(
            "configuration reloaded from %s: %s", new.source,
            f"applied {', '.join(applied)}" if applied else "no change to apply",
        )  # fmt: skip
        if self.restart_needed:
            log.warning(
                "these changed keys need a restart to take effect (systemctl restart"
                " tlspolicy): %s", ", ".join(self.restart_needed),
            )  # fmt: skip
        systemd.notify_ready("configuration reloaded")

    async def shutdown(self) -> None:
        systemd.notify_stopping()
        log.info("stopping: finishing in-flight answers")
        await self.server.stop()
        if self.tlsrpt is not None:
            await self.tlsrpt.aclose()  # flushes the TLSRPT batch in flight
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.monitor is not None:
            await self.monitor.aclose()
        if self.http is not None:
            await self.http.stop()
        if self.app is not None:
            await self.app.aclose()
        dnstransport.close()
        log.info("stopped")


def _no_rolling_restart() -> None:
    log.warning("SIGUSR2 ignored: a rolling restart needs server.workers of 2 or more")


async def serve(config: Config, config_path: str | None) -> int:
    setup_logging(config.server.log_level, config.server.log_format)
    handoff = worker_handoff()
    if handoff is None and config.server.workers > 1:
        from tlspolicy.server.supervisor import Supervisor  # noqa: PLC0415 - workers only

        return await Supervisor(config, config_path).run()
    return await Runner(config, config_path, handoff).run()
