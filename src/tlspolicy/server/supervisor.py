"""``server.workers: N`` (N > 1): a small supervisor process and N worker processes.

Why this shape: one Python process uses one core; several processes accepting on the same
listeners use all of them, and a parent that owns the listening sockets lets workers be
replaced without refusing a connection (``binding``).

* The supervisor binds (as root, before any privilege drop) and keeps every listening
  socket open; it does no DNS, no cache, no answering. It stays small and long-lived.
* Each worker is a fresh ``tlspolicy serve`` process (fork + exec: new code after an
  upgrade, nothing shared by accident) that adopts its sockets from ``$TLSPOLICY_WORKER``,
  drops privileges itself, opens the shared cache and reports "ready" through a pipe.
  A second pipe is the lifeline: when the supervisor dies, the workers see EOF and stop.
* Signals: SIGTERM/SIGINT stop the workers (each finishes its in-flight answers) and then
  the supervisor; SIGHUP is checked (the new file must load) and forwarded, each worker
  reloads in place; SIGUSR2 is a rolling restart: per slot a new worker is started and only
  once it accepts is the old one told to stop, so a restart or an upgrade never refuses a
  connection. A worker that dies is re-spawned (after a pause that grows while it keeps
  dying at start-up).
* Only worker 0 runs the metrics endpoint and the TLSRPT collector (their addresses cannot
  be shared); its metrics are its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from tlspolicy.config import Config, load_config
from tlspolicy.errors import ConfigError
from tlspolicy.server import systemd
from tlspolicy.server.binding import WORKER_ENV, Bound, bind_all, encode_handoff

log = logging.getLogger("tlspolicy.supervisor")

READY_TIMEOUT_S = 60.0  # a worker that does not accept by then is killed
STOP_TIMEOUT_S = 25.0  # below systemd's TimeoutStopSec=30 in contrib/tlspolicy.service
RESPAWN_MIN_S, RESPAWN_MAX_S = 0.5, 30.0
STABLE_AFTER_S = 10.0  # a worker alive this long resets the re-spawn pause
# Environment a worker must not inherit: systemd talks to the supervisor only.
_PRIVATE_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID", "LISTEN_FDS")


@dataclass(eq=False)  # identity: a worker is one process
class Worker:
    slot: int
    process: asyncio.subprocess.Process
    life_fd: int
    started: float = field(default_factory=time.monotonic)
    retiring: bool = False

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signum)


class Supervisor:
    def __init__(self, config: Config, config_path: str | None) -> None:
        self.config = config
        self.config_path = config_path
        self.count = config.server.workers
        self.bound: Bound | None = None
        self.current: dict[int, Worker] = {}
        self.all: set[Worker] = set()
        self.pause = dict.fromkeys(range(self.count), RESPAWN_MIN_S)
        self.stopping = False
        self.stop_event = asyncio.Event()
        self.restarting: asyncio.Task[None] | None = None
        self.ready = False
        self.watchers: set[asyncio.Task[None]] = set()  # referenced until they end

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # Handlers first: a signal during start-up must not kill the supervisor by default.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGUSR2, self.rolling_restart)
        self.bound = bind_all(self.config.server, self.count, systemd.listen_fds())
        try:
            starting: asyncio.Future[list[bool]] = asyncio.gather(
                *(self._start(s) for s in range(self.count))
            )
            stop: asyncio.Future[Any] = asyncio.ensure_future(self.stop_event.wait())
            await asyncio.wait([starting, stop], return_when=asyncio.FIRST_COMPLETED)
            if not starting.done() or not all(starting.result()):
                log.error("stopped before every worker was ready")
                await self._stop_all()
                starting.cancel()
                return 0 if self.stop_event.is_set() else 1
            self.ready = True
            log.info("supervisor %d: %d workers ready", os.getpid(), self.count)
            systemd.notify_ready(f"{self.count} workers")
            interval = systemd.watchdog_interval()
            watchdog = asyncio.create_task(systemd.watchdog_loop(interval)) if interval else None
            await stop
            systemd.notify_stopping()
            if watchdog is not None:
                watchdog.cancel()
            await self._stop_all()
            return 0
        finally:
            self.bound.close()

    async def _start(self, slot: int) -> bool:
        """Start a worker for ``slot`` and wait until it accepts; True when it does."""
        assert self.bound is not None
        socks = self.bound.for_slot(slot)
        ready_r, ready_w = os.pipe()
        life_r, life_w = os.pipe()
        fds = [s.fileno() for s in socks]
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_VARS}
        env[WORKER_ENV] = encode_handoff(slot, fds, ready_w, life_r)
        args = [sys.executable, "-m", "tlspolicy", "serve"]
        if self.config_path is not None:
            args += ["-c", self.config_path]
        try:
            process = await asyncio.create_subprocess_exec(
                *args, pass_fds=[*fds, ready_w, life_r], env=env
            )
        finally:
            os.close(ready_w)
            os.close(life_r)
        worker = Worker(slot, process, life_w)
        self.all.add(worker)
        try:
            ready = await _wait_ready(ready_r)
        finally:
            os.close(ready_r)
        if not ready:
            log.error("worker %d (pid %d) did not become ready", slot, process.pid)
            worker.signal(signal.SIGKILL)
            await process.wait()
            self._forget(worker)
            return False
        old = self.current.get(slot)
        self.current[slot] = worker
        watcher = asyncio.get_running_loop().create_task(self._watch(worker))
        self.watchers.add(watcher)
        watcher.add_done_callback(self.watchers.discard)
        if old is not None:
            old.retiring = True
            old.signal(signal.SIGTERM)  # the new one accepts already: nothing is refused
        log.info("worker %d ready (pid %d)", slot, process.pid)
        return True

    async def _watch(self, worker: Worker) -> None:
        code = await worker.process.wait()
        self._forget(worker)
        if self.stopping or worker.retiring or self.current.get(worker.slot) is not worker:
            return
        del self.current[worker.slot]
        lived = time.monotonic() - worker.started
        pause = RESPAWN_MIN_S if lived >= STABLE_AFTER_S else self.pause[worker.slot]
        self.pause[worker.slot] = min(pause * 2, RESPAWN_MAX_S)
        log.error(
            "worker %d (pid %d) exited with %s after %.0f s; starting a new one in %.1f s",
            worker.slot,
            worker.process.pid,
            code,
            lived,
            pause,
        )
        while not self.stopping and worker.slot not in self.current:
            await asyncio.sleep(pause)
            if self.stopping or await self._start(worker.slot):
                return
            pause = min(pause * 2, RESPAWN_MAX_S)

    def _forget(self, worker: Worker) -> None:
        self.all.discard(worker)
        if worker.life_fd >= 0:
            os.close(worker.life_fd)
            worker.life_fd = -1

    def reload(self) -> None:
        """SIGHUP: check the file, then let every worker reload it in place."""
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, workers keep the running configuration: %s", exc)
            return
        if new.server.workers != self.count or new.server.listen != self.config.server.listen:
            log.warning("server.workers and server.listen change only with a full restart")
        for worker in list(self.current.values()):
            worker.signal(signal.SIGHUP)

    def rolling_restart(self) -> None:
        """SIGUSR2: replace the workers one slot at a time, new one first."""
        if not self.ready or (self.restarting is not None and not self.restarting.done()):
            log.warning("rolling restart ignored: still starting or already restarting")
            return
        self.restarting = asyncio.get_running_loop().create_task(self._restart_all())

    async def _restart_all(self) -> None:
        log.info("rolling restart of %d workers", self.count)
        for slot in range(self.count):
            if self.stopping:
                return
            if not await self._start(slot):
                log.error("rolling restart stopped at worker %d: the old one keeps running", slot)
                return
        log.info("rolling restart done")

    async def _stop_all(self) -> None:
        self.stopping = True
        if self.restarting is not None:
            self.restarting.cancel()
        workers = list(self.all)
        for worker in workers:
            worker.signal(signal.SIGTERM)
        waits = [w.process.wait() for w in workers]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), STOP_TIMEOUT_S)
        except TimeoutError:
            for worker in workers:
                worker.signal(signal.SIGKILL)
            await asyncio.gather(*(w.process.wait() for w in workers))
        for worker in workers:
            self._forget(worker)


async def _wait_ready(fd: int) -> bool:
    """True when the worker wrote its ready byte; False on EOF (it died) or timeout."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    def readable() -> None:
        if not got.done():
            try:
                got.set_result(os.read(fd, 1))
            except OSError:
                got.set_result(b"")

    loop.add_reader(fd, readable)
    try:
        return await asyncio.wait_for(got, READY_TIMEOUT_S) == b"R"
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
