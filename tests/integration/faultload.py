"""Steady load for the fault matrix: persistent connections asking domains with known answers.

``Load`` runs ``connections`` threads, each with one persistent socketmap connection asking
the domains of ``answers`` in turn, until ``stop()``. It counts answers, keeps every wrong
answer and every connection error (with what was asked), so a fault test can inject its
fault mid-load and then assert "0 wrong answers" and "0 errors" (or, for a shutdown, that
no request went unanswered). Bounded: every request has ``REQUEST_TIMEOUT_S``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.integration.server import ServerProcess, read_netstring
from tests.lab.netutil import wait_until

REQUEST_TIMEOUT_S = 20.0
PROGRESS_TIMEOUT_S = 20.0


@dataclass
class Load:
    server: ServerProcess
    answers: dict[str, str]  # domain -> the one right answer
    connections: int = 8
    reconnect: bool = False  # after a connection error, connect again and go on
    answered: int = 0
    wrong: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for i in range(self.connections):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT_S + 5)

    def wait_answers(self, more: int) -> None:
        """Until ``more`` further answers have arrived (the load is running, not stuck)."""
        target = self.answered + more
        wait_until(lambda: self.answered >= target, timeout=PROGRESS_TIMEOUT_S,
                   what=f"{more} more answers under load")  # fmt: skip

    def _run(self, index: int) -> None:
        domains = list(self.answers)
        n = index
        while not self._stop.is_set():
            try:
                with socket.create_connection((self.server.host, self.server.port),
                                              timeout=REQUEST_TIMEOUT_S) as sock:  # fmt: skip
                    while not self._stop.is_set():
                        domain = domains[n % len(domains)]
                        n += 1
                        payload = f"QUERY {domain}".encode()
                        sock.sendall(b"%d:%s," % (len(payload), payload))
                        reply = read_netstring(sock).decode()
                        with self._lock:
                            self.answered += 1
                            if reply != self.answers[domain]:
                                self.wrong.append((domain, reply))
            except OSError as exc:  # ConnectionError included
                with self._lock:
                    self.errors.append(f"connection {index}: {type(exc).__name__}: {exc}")
                if not self.reconnect:
                    return
                self._stop.wait(0.05)


@contextlib.contextmanager
def running_load(server: ServerProcess, answers: dict[str, str], **kw: object) -> Iterator[Load]:
    load = Load(server, answers, **kw).start()  # type: ignore[arg-type]
    try:
        load.wait_answers(len(answers) * 2)
        yield load
    finally:
        load.stop()
