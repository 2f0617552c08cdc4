"""The Postfix 3.10 lab put together: namespace, forwarders, SMTP sinks, our server, Postfix.

``start_postfix_lab`` starts, in this order: the cached Debian 13 root (built on first use),
``tlspolicy serve`` on the host (lab config, map ``QUERYwithTLSRPT``), the namespace with
Postfix's overlay root, forwarders for DNS (namespace 127.0.0.1:53 -> lab Unbound) and the
socketmap (namespace 127.0.0.1:PORT -> the server), the MX sinks, a ``DatagramCapture`` on
Postfix's TLSRPT socket, and Postfix. Everything stops in reverse order. With ``smtpd=True``
Postfix's smtpd listens on the namespace's 127.0.0.1:25, reached from the host through an
inward ``Forwarder`` at ``PostfixLab.smtp_address`` (for the reporter's submissions);
``settings`` and ``master_cf`` go to ``Postfix310.configure``.

``DatagramCapture`` reads the TLSRPT datagrams in a thread (the kernel queues only
``net.unix.max_dgram_qlen`` of them, 10 by default, and libtlsrpt never waits). ``barrier``
sends a marker datagram and waits for it: AF_UNIX datagrams keep their order, so everything
Postfix sent before has been read once the marker is back.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.server import ServerProcess
from tests.lab.mxsinks import MxSinks
from tests.lab.netns import Forwarder
from tests.lab.netutil import LOOPBACK
from tests.lab.postfix import socketmap_inet
from tests.lab.postfix310 import Delivery, Postfix310
from tests.lab.scenario import Lab
from tests.lab.smtpcases import EXPERIMENTS, SINKS
from tests.lab.trixie import ensure_root

MAP_NAME = "QUERYwithTLSRPT"
BARRIER = b'{"lab-barrier": %d}'
WAIT_S = 10.0
SMTPD_PORT = 25  # Postfix's smtpd inside the namespace, when started with smtpd=True
RECEIVE_BYTES = 65536


class DatagramCapture:
    """A plain unix datagram socket standing in for the TLSRPT collector."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.datagrams: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._marks = 0
        self._seen_marks: set[int] = set()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        self.path.chmod(0o666)  # Postfix's smtp(8) runs as the postfix user
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
        self._thread.start()

    def _run(self, sock: socket.socket) -> None:
        while self._sock is sock:
            try:
                data = sock.recv(RECEIVE_BYTES)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = {"lab-invalid": data.decode(errors="replace")}
            with self._lock:
                if isinstance(parsed, dict) and "lab-barrier" in parsed:
                    self._seen_marks.add(int(parsed["lab-barrier"]))
                else:
                    self.datagrams.append(parsed)

    def barrier(self) -> None:
        """Return once every datagram sent before this call has been read."""
        self._marks += 1
        mark = self._marks
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as out:
            out.sendto(BARRIER % mark, str(self.path))
        _wait(lambda: mark in self._seen_marks, f"TLSRPT barrier {mark}")

    def for_domain(self, domain: str) -> list[dict[str, Any]]:
        with self._lock:
            return [d for d in self.datagrams if d.get("d") == domain]

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if self._thread is not None:
            self._thread.join(2.0)
        if sock is not None:
            sock.close()
        self.path.unlink(missing_ok=True)


def _wait(check: Any, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@dataclass
class PostfixLab:
    lab: Lab
    postfix: Postfix310
    sinks: MxSinks
    capture: DatagramCapture
    server: ServerProcess
    addresses: dict[str, str]  # sink host -> its 127.0.0.x
    smtp_address: tuple[str, int] | None = None  # host side of Postfix's smtpd (smtpd=True)

    def deliver(self, domain: str) -> tuple[Delivery, list[dict[str, Any]]]:
        """Send one message to a fresh recipient at ``domain``; its fate and new datagrams."""
        self.capture.barrier()
        before = len(self.capture.for_domain(domain))
        rcpt = self.postfix.new_rcpt(domain)
        self.postfix.send(rcpt)
        delivery = self.postfix.wait_delivery(rcpt)
        self.capture.barrier()  # libtlsrpt sent before Postfix logged the status
        return delivery, self.capture.for_domain(domain)[before:]


def host_address(lab: Lab, host: str) -> str:
    found = lab.dns.get(host, "A")
    if found is None:
        raise KeyError(f"no A record for {host} in the lab catalogue")
    return found[1][0]


@contextlib.contextmanager
def start_postfix_lab(
    lab: Lab,
    workdir: Path,
    *,
    settings: Sequence[str] = (),
    master_cf: str = "",
    smtpd: bool = False,
) -> Iterator[PostfixLab]:
    root = ensure_root()
    with contextlib.ExitStack() as stack:
        (workdir / "server").mkdir()
        server = ServerProcess(lab, workdir / "server")
        stack.callback(server.stop)
        (workdir / "postfix").mkdir()
        postfix = Postfix310(workdir / "postfix", root)
        stack.callback(postfix.stop)
        ns = postfix.start_namespace()
        for forwarder in (
            Forwarder(ns, ("127.0.0.1", 53), lab.resolver, udp=True),
            Forwarder(ns, ("127.0.0.1", server.port), (server.host, server.port)),
        ):
            stack.callback(forwarder.start().stop)
        addresses = {sink.host: host_address(lab, sink.host) for sink in SINKS}
        sinks = MxSinks(
            workdir / "postfix",
            ns,
            addresses,
            lab.catalogue.mx_keys,
            ca=lab.https.ca,
            untrusted_ca=lab.https.untrusted_ca,
        )
        stack.callback(sinks.stop)
        sinks.start()
        capture = DatagramCapture(postfix.tlsrpt_socket)
        stack.callback(capture.stop)
        capture.start()
        postfix.configure(
            policy_map=socketmap_inet("127.0.0.1", server.port, MAP_NAME),
            ca_pem=lab.ca_file.read_bytes(),
            static={domain: answer for domain, (_, answer) in EXPERIMENTS.items()},
            settings=settings,
            master_cf=master_cf,
            smtpd=smtpd,
        )
        smtp_address = None
        if smtpd:
            inward = Forwarder(ns, (LOOPBACK, 0), (LOOPBACK, SMTPD_PORT), inward=True)
            stack.callback(inward.start().stop)
            smtp_address = inward.address
        postfix.start()
        stack.callback(postfix.master.stop)  # first: no delivery meets a stopped sink
        yield PostfixLab(lab, postfix, sinks, capture, server, addresses, smtp_address)
