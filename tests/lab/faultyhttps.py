"""A policy host that breaks the connection in ways ``HttpsLab`` cannot: for the fault matrix.

One TLS listener on a free ``127.89.0.x:443`` (point the policy host's A record at
``address``), certificates from the lab CA, one thread per connection. Modes:

* ``reset_mid_body``: headers with Content-Length, half the policy, then a TCP RST;
* ``tls_alert``: the handshake ends with a fatal ``handshake_failure`` alert;
* ``endless_body``: 200 text/plain, chunked, 4 KiB chunks for as long as the client reads.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from enum import StrEnum

from tests.lab.https import HTTPS_PORT, HttpsLab

ADDRESS_CANDIDATES = tuple(f"127.89.0.{n}" for n in range(1, 21))
IO_TIMEOUT_S = 30.0


class HttpsFault(StrEnum):
    RESET_MID_BODY = "reset_mid_body"
    TLS_ALERT = "tls_alert"
    ENDLESS_BODY = "endless_body"


class FaultyPolicyHost:
    def __init__(self, lab: HttpsLab, host: str, body: bytes, fault: HttpsFault) -> None:
        self.host = host
        self.body = body
        self.fault = fault
        self.connections = 0
        self.address = ""
        self._stop = threading.Event()
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        lab.ca.issue_cert(host).configure_cert(self._context)
        if fault is HttpsFault.TLS_ALERT:
            self._context.sni_callback = lambda *_: ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def start(self) -> None:
        for address in ADDRESS_CANDIDATES:
            with contextlib.suppress(OSError):
                self._listener.bind((address, HTTPS_PORT))
                self.address = address
                break
        else:
            raise RuntimeError(f"no 127.89.0.x address free on port {HTTPS_PORT}")
        self._listener.listen(16)
        threading.Thread(target=self._accept, name="faulty-https", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(IO_TIMEOUT_S)
        with (
            contextlib.suppress(OSError),
            raw,
            self._context.wrap_socket(raw, server_side=True) as tls,
        ):
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                request += chunk
            if self.fault is HttpsFault.RESET_MID_BODY:
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                tls.sendall(head + b"Content-Length: %d\r\n\r\n" % len(self.body))
                tls.sendall(self.body[: len(self.body) // 2])
                tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # closing the raw socket now sends RST
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
            chunk = b"%x\r\n%s\r\n" % (4096, b"x" * 4096)
            while not self._stop.is_set():
                tls.sendall(chunk)
