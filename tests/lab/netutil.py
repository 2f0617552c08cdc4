"""Loopback plumbing for the lab: free ports, child daemons that die with us, readiness waits.

Rules kept here:
* Every daemon runs under a tiny reaper (``REAPER``, a child Python process started from the
  calling thread with ``PR_SET_PDEATHSIG``), so a killed pytest never leaves NSD or Unbound
  behind. The reaper is a child subreaper: workers that outlive their parent (NSD's server
  process does) are reaped by it instead of becoming zombies under a PID 1 that never reaps.
  ``stop`` sends SIGTERM (forwarded to the daemon), then SIGKILLs the process group.
* A port is "free" only when both its TCP and its UDP side can be bound (DNS servers need both).
  Another session may still grab it before the daemon binds: callers retry start-up on a new port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
STOP_GRACE_S = 2.0  # time a daemon gets after SIGTERM before SIGKILL
POLL_INTERVAL_S = 0.01


def free_port(host: str = LOOPBACK, *, udp: bool = True) -> int:
    """Return a port on ``host`` that is free for TCP (and UDP unless ``udp`` is false)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            if not udp:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dgram:
                try:
                    dgram.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no port free for both TCP and UDP on {host}")


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: no dlopen in the child


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL it when the parent thread exits."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# Runs as ``python reaper.py argv...`` (written next to the log): forwards SIGTERM/SIGINT to
# the daemon, reaps every descendant, exits with the daemon's status once no child is left.
REAPER = f"""
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl({PR_SET_CHILD_SUBREAPER}, 1, 0, 0, 0)
forwarded = (signal.SIGTERM, signal.SIGINT)
signal.pthread_sigmask(signal.SIG_BLOCK, forwarded)
pid = os.fork()
if pid == 0:
    libc.prctl({PR_SET_PDEATHSIG}, signal.SIGKILL, 0, 0, 0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, forwarded)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
for sig in forwarded:
    signal.signal(sig, lambda signum, frame: os.kill(pid, signum))
signal.pthread_sigmask(signal.SIG_UNBLOCK, forwarded)
code = 0
while True:
    try:
        done, status = os.wait()
    except ChildProcessError:
        break
    if done == pid:
        code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


class Daemon:
    """A foreground child process whose stdout and stderr go to ``log``."""

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        reaper = self.log.parent / "reaper.py"
        if not reaper.exists() or reaper.read_text() != REAPER:
            reaper.write_text(REAPER)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(reaper), *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() can SIGKILL all of it
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, no locks taken
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the daemon, then SIGKILL its process group after it exits or ``STOP_GRACE_S``.

        The leader is reaped last, so its pid (the group id) cannot be reused by an unrelated
        process while we still signal the group. Safe to call twice.
        """
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)  # the reaper forwards it to the daemon
            deadline = time.monotonic() + STOP_GRACE_S
            while not self._exited_unreaped(proc) and time.monotonic() < deadline:
                time.sleep(POLL_INTERVAL_S)
            # Anything that ignored SIGTERM for STOP_GRACE_S shares the reaper's group.
            self._signal_group(proc, signal.SIGKILL)
        proc.wait()

    @staticmethod
    def _exited_unreaped(proc: subprocess.Popen[bytes]) -> bool:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return info is not None

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    alive: Daemon | None = None,
    retry_on: tuple[type[Exception], ...] = (OSError,),
) -> None:
    """Poll ``check`` until it is true; fail early if ``alive`` exited, with its log tail.

    ``check`` raising one of ``retry_on`` counts as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(*retry_on):
            if check():
                return
        if alive is not None and not alive.running:
            raise RuntimeError(f"{alive.name} exited while waiting for {what}:\n{alive.log_tail()}")
        if time.monotonic() > deadline:
            tail = f":\n{alive.log_tail()}" if alive is not None else ""
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}{tail}")
        time.sleep(POLL_INTERVAL_S)


def tcp_connectable(host: str, port: int) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
