"""The simulator server drops a host that sends nothing for its idle timeout (issue 18, item 7):
a hung host no longer holds the board until the server is restarted."""

from __future__ import annotations

import logging
import socket
import time

import numpy as np
import pytest

from drivers.board import Board
from drivers.errors import BoardBusyError, LinkError
from drivers.sim.board_model import BoardOptions
from drivers.sim.server import (
    DEFAULT_IDLE_TIMEOUT_S,
    SimServer,
    check_idle_timeout,
    split_server_options,
)

IDLE_S = 0.5


def test_a_silent_host_is_dropped_and_the_next_host_is_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.sim.server")
    with SimServer(BoardOptions(seed=3, cores=1), idle_timeout_s=IDLE_S) as server:
        host, port = server.address
        with socket.create_connection((host, port), timeout=5) as silent:
            time.sleep(IDLE_S + 0.6)  # past the idle timeout (+ the server's poll period)
            silent.settimeout(2.0)
            assert silent.recv(1) == b"", "the server should have closed the silent host"
            with Board(server.url, timeout_s=2.0) as board:
                assert board.status().ready
        assert server.clients_dropped_idle == 1
    assert any("sent no request for" in r.getMessage() for r in caplog.records)


def test_the_board_is_busy_while_the_silent_host_is_within_its_idle_time() -> None:
    with SimServer(BoardOptions(seed=3, cores=1), idle_timeout_s=30.0) as server:
        host, port = server.address
        with socket.create_connection((host, port), timeout=5):
            time.sleep(0.1)  # the server has taken this host
            with pytest.raises(BoardBusyError):
                Board(server.url, timeout_s=2.0)
        assert server.clients_dropped_idle == 0


def test_a_host_that_keeps_talking_is_not_dropped() -> None:
    with SimServer(BoardOptions(seed=3, cores=1), idle_timeout_s=IDLE_S) as server:
        with Board(server.url, timeout_s=2.0) as board:
            for _ in range(6):  # 1.2 s in all, more than twice the idle timeout
                time.sleep(0.2)
                assert board.status().ready
        assert server.clients_dropped_idle == 0


def test_a_board_left_idle_fails_with_a_link_error_at_its_next_request() -> None:
    """No keep-alive from the host (docs/protocol.md): the next request finds the connection
    closed and says so, as a LinkError, instead of hanging."""
    with SimServer(BoardOptions(seed=3, cores=1), idle_timeout_s=IDLE_S) as server:
        board = Board(server.url, timeout_s=1.0, retries=0)
        try:
            time.sleep(IDLE_S + 0.6)
            with pytest.raises(LinkError):
                board.status()
        finally:
            board.close()


def test_idle_timeout_option() -> None:
    assert split_server_options("seed=1&cores=2") == ("seed=1&cores=2", DEFAULT_IDLE_TIMEOUT_S)
    assert split_server_options("seed=1&idle_timeout=2.5&cores=2") == ("seed=1&cores=2", 2.5)
    assert split_server_options("idle_timeout=0") == ("", None)
    for bad in ("idle_timeout=-1", "idle_timeout=soon", "idle_timeout=nan"):
        with pytest.raises(ValueError, match="idle_timeout"):
            split_server_options(bad)
    assert check_idle_timeout(None) is None
    with pytest.raises(ValueError, match="idle timeout"):
        SimServer(BoardOptions(seed=3, cores=1), idle_timeout_s=0)


# -- a host that reads a large reply late gets all of it (review finding) ---------------------


def _mvm_request(batch: int) -> bytes:
    from drivers.link.payloads import OUTPUT_RAW, MvmRequest
    from drivers.link.protocol import Command, encode_chunks

    request = MvmRequest(
        mode=1,
        output=OUTPUT_RAW,
        cores=np.array([0], dtype=np.uint8),
        inputs=np.ones((1, batch, 256), dtype=np.int8),
    )
    return encode_chunks(Command.MVM, 1, request.chunks())


def test_a_host_that_pauses_before_reading_a_large_reply_gets_all_of_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from drivers.link.protocol import Frame, FrameDecoder

    batch = 16384  # RAW: 2 x uint16 per row, 256 rows: a 16 MiB reply
    caplog.set_level(logging.INFO, logger="drivers.sim.server")
    with SimServer(BoardOptions(seed=3, cores=1), idle_timeout_s=30.0) as server:
        with socket.create_connection(server.address, timeout=30) as raw:
            raw.sendall(_mvm_request(batch))
            time.sleep(1.0)  # longer than the server's receive poll (0.2 s)
            decoder = FrameDecoder()
            items = decoder.feed(b"")
            while not items:
                data = raw.recv(1 << 20)
                assert data, "the server dropped the host mid-reply"
                items = decoder.feed(data)
        assert isinstance(items[0], Frame), items[0]
        assert items[0].status == 0
        assert len(items[0].payload) >= batch * 256 * 4
        assert server.clients_dropped_idle == 0
    assert not any("dropped" in r.getMessage() for r in caplog.records)


def test_bytes_that_complete_no_request_do_not_keep_a_host_connected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The idle time counts from the last reply (docs/protocol.md), not from the last byte."""
    caplog.set_level(logging.WARNING, logger="drivers.sim.server")
    with SimServer(BoardOptions(seed=3, cores=1), idle_timeout_s=1.0) as server:
        with socket.create_connection(server.address, timeout=5) as chatty:
            start = time.monotonic()
            dropped_after = None
            while time.monotonic() - start < 4.0:
                try:
                    chatty.sendall(b"\x00")  # garbage: no sync, no frame, no reply
                except OSError:
                    dropped_after = time.monotonic() - start
                    break
                chatty.settimeout(0.2)
                try:
                    if chatty.recv(1) == b"":
                        dropped_after = time.monotonic() - start
                        break
                except TimeoutError:
                    pass
                except OSError:  # reset: the server closed with our garbage unread
                    dropped_after = time.monotonic() - start
                    break
            assert dropped_after is not None, "a host sending garbage was never dropped"
            assert 0.9 <= dropped_after <= 2.0, dropped_after
        assert server.clients_dropped_idle == 1
    assert any("sent no request for" in r.getMessage() for r in caplog.records)
