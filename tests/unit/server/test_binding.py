"""binding: the supervisor's sockets (SO_REUSEPORT per slot, shared unix) and the handoff."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from tlspolicy.config.schema import ListenAddress, ListenKind, ServerConfig
from tlspolicy.errors import ConfigError
from tlspolicy.server import binding
from tlspolicy.server.binding import bind_all, encode_handoff, worker_handoff


def _config(tmp_path: Path) -> ServerConfig:
    return ServerConfig(
        listen=(
            ListenAddress(kind=ListenKind.TCP, host="127.0.0.1", port=0),
            ListenAddress(kind=ListenKind.UNIX, path=str(tmp_path / "run" / "policy.sock")),
        ),
        socket_mode=0o660,
    )


def test_tcp_sockets_per_slot_share_one_port_and_unix_is_shared(tmp_path: Path) -> None:
    bound = bind_all(_config(tmp_path), 3, activated=())
    try:
        tcp = [bound.per_slot[slot][0] for slot in range(3)]
        assert len({s.getsockname() for s in tcp}) == 1  # port 0: all joined the first's
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in tcp)
        assert len(bound.shared) == 1 and bound.shared[0].family == socket.AF_UNIX
        assert bound.for_slot(2) == [bound.shared[0], tcp[2]]
        path = tmp_path / "run" / "policy.sock"
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        with socket.create_connection(tcp[0].getsockname(), timeout=2):
            pass  # the kernel queues it on one of the sockets
    finally:
        bound.close()
    assert not path.exists()


def test_activated_sockets_are_shared_and_nothing_is_bound(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    bound = bind_all(_config(tmp_path), 2, activated=[listener])
    assert bound.for_slot(0) == bound.for_slot(1) == [listener]
    assert not (tmp_path / "run").exists()
    bound.close()


def test_a_taken_port_is_a_config_error_and_nothing_stays_bound(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()  # without SO_REUSEPORT: nobody may join
    port = taken.getsockname()[1]
    config = ServerConfig(listen=(ListenAddress(kind=ListenKind.TCP, host="127.0.0.1", port=port),))
    with pytest.raises(ConfigError, match="cannot listen"):
        bind_all(config, 2, activated=())
    taken.close()


def test_handoff_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    ready_r, ready_w = os.pipe()
    life_r, life_w = os.pipe()
    fd = os.dup(listener.fileno())
    monkeypatch.setenv(binding.WORKER_ENV, encode_handoff(1, [fd], ready_w, life_r))
    handoff = worker_handoff()
    assert handoff is not None and binding.WORKER_ENV not in os.environ
    assert handoff.slot == 1 and handoff.life_fd == life_r
    assert handoff.sockets[0].getsockname() == listener.getsockname()
    assert not handoff.sockets[0].get_inheritable()
    handoff.ready()
    handoff.ready()  # once only
    assert os.read(ready_r, 10) == b"R"
    for sock in (*handoff.sockets, listener):
        sock.close()
    for pipe_fd in (ready_r, life_r, life_w):
        os.close(pipe_fd)


def test_no_handoff_outside_a_supervisor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(binding.WORKER_ENV, raising=False)
    assert worker_handoff() is None


def test_malformed_handoff_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(binding.WORKER_ENV, "one:two")
    with pytest.raises(ConfigError):
        worker_handoff()
