"""End-to-end: the Board driver against the simulated board through mockchip:// and socket://."""

from __future__ import annotations

import socket
import struct
import time
import zlib
from collections.abc import Iterator

import numpy as np
import pytest

from drivers.board import Board, MvmCounts
from drivers.errors import (
    BoardBusyError,
    BoardResetError,
    LinkError,
    NotSupportedError,
)
from drivers.ldpu import LdpuCoefficients
from drivers.link.protocol import Command, encode_frame, encode_header
from drivers.sim.board_model import BoardOptions
from drivers.sim.server import SimServer, spawned

SMALL = "mockchip://?seed=5&cores=2"


def _exercise(board: Board) -> dict[str, np.ndarray | float | int]:
    """A fixed sequence touching every command; returns what it measured."""
    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(8), 4)
    cols = np.tile(np.arange(4), 8)
    board.apply_pulses(0, rows, cols, 0, "reset", 700, 125)
    board.apply_pulses(0, rows, cols, 0, "set", 125, 250)
    reads = board.verify_read(0, rows, cols, 0)
    inputs = rng.integers(-127, 128, size=(2, 16, 256)).astype(np.int8)
    raw = board.mvm([0, 1], inputs, mode=4)
    board.load_ldpu(1, LdpuCoefficients(affine_scale=np.full(256, 0.5), relu=True))
    ldpu = board.mvm(1, inputs[1], mode=1, output="ldpu")
    assert isinstance(raw, MvmCounts)
    return {
        "reads": reads,
        "pos": raw.positive,
        "neg": raw.negative,
        "ldpu": ldpu,
        "time": board.advance_clock(25.0),
        "temperature": board.temperature_c(),
    }


@pytest.fixture
def server_url() -> Iterator[str]:
    """The simulator server in a child process on a free port, stopped afterwards."""
    with spawned("seed=5&cores=2") as url:
        yield url


def test_same_results_through_mockchip_and_socket(server_url: str) -> None:
    with Board(SMALL) as in_process:
        local = _exercise(in_process)
    with Board(server_url) as remote:
        over_tcp = _exercise(remote)
        assert remote.identity.chip_id == "SIM-HERMES-0005"
    for key, value in local.items():
        np.testing.assert_array_equal(value, over_tcp[key], err_msg=key)
    # the measurement is not trivially empty
    assert np.asarray(local["reads"]).max() > 0
    assert np.asarray(local["pos"]).max() > 0


def test_identity_status_and_registers() -> None:
    with Board(SMALL) as board:
        ident = board.identity
        assert (ident.n_cores, ident.rows, ident.cols, ident.devices_per_weight) == (2, 256, 256, 4)
        assert ident.simulated and ident.clock_control
        assert board.mvm_read_voltage_mv == 200
        board.mvm_read_voltage_mv = 300
        assert board.mvm_read_voltage_mv == 300
        board.scratch = 0xDEADBEEF
        assert board.scratch == 0xDEADBEEF
        status = board.status()
        assert status.ready and status.boot_id == board.link.boot_id
        assert status.errors == []


def test_board_reset_keeps_devices_and_is_reported() -> None:
    with Board("mockchip://?seed=2&cores=1") as board:
        board.apply_pulses(0, 0, 0, 0, "set", 125, 250)
        before = board.verify_read(0, [0] * 20, [0] * 20, [0] * 20).mean()
        board.load_ldpu(0, LdpuCoefficients(affine_scale=np.full(256, 2.0)))
        old_boot = board.link.boot_id
        new_boot = board.reset()
        assert new_boot != old_boot and board.link.boot_id == new_boot
        assert board.read_ldpu(0) == LdpuCoefficients.identity()
        after = board.verify_read(0, [0] * 20, [0] * 20, [0] * 20).mean()
        assert abs(after - before) < 0.1 * before + 3


def test_unexpected_reset_raises_board_reset_error() -> None:
    # The board resets when its 3rd frame arrives (IDENTIFY is the 1st).
    with Board("mockchip://?seed=2&cores=1&reset_after=3", timeout_s=0.05) as board:
        board.status()
        with pytest.raises(BoardResetError):
            board.status()


def test_real_time_board_refuses_clock() -> None:
    with Board("mockchip://?cores=1&clock=real") as board:
        assert not board.identity.clock_control
        with pytest.raises(NotSupportedError):
            board.advance_clock(1.0)


def test_bad_mockchip_url_is_a_clear_error() -> None:
    with pytest.raises(LinkError, match="unknown simulator option"):
        Board("mockchip://?sead=1")
    with pytest.raises(LinkError, match="cores"):
        Board("mockchip://?cores=65")


@pytest.mark.parametrize("faults", ["corrupt=5e-5&fault_seed=3", "drop=0.2&fault_seed=4"])
def test_faulty_link_gives_the_clean_result(faults: str) -> None:
    url = "mockchip://?seed=9&cores=1"
    rng = np.random.default_rng(1)
    inputs = rng.integers(-127, 128, size=(8, 256)).astype(np.int8)

    def measure(board: Board) -> tuple[np.ndarray, ...]:
        board.apply_pulses(0, np.arange(64), np.arange(64), 0, "set", 125, 250)
        reads = board.verify_read(0, np.arange(64), np.arange(64), 0)
        results = [reads]
        for _ in range(10):
            counts = board.mvm(0, inputs, mode=4)
            results += [counts.positive, counts.negative]
        return tuple(results)

    with Board(url) as clean:
        expected = measure(clean)
    with Board(f"{url}&{faults}", timeout_s=0.05, retries=8) as faulty:
        got = measure(faulty)
        assert faulty.link.stats.retries > 0
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)


class TestServer:
    @pytest.fixture
    def server(self) -> Iterator[SimServer]:
        with SimServer(BoardOptions(seed=3, cores=1)) as server:
            yield server

    def test_binds_loopback_by_default(self, server: SimServer) -> None:
        assert server.address[0] == "127.0.0.1"

    def test_second_client_is_busy(self, server: SimServer) -> None:
        with Board(server.url) as first:
            with pytest.raises(BoardBusyError, match="another host"):
                Board(server.url, timeout_s=2.0)
            assert first.status().ready

    def test_client_disconnecting_mid_frame_does_not_stop_the_server(
        self, server: SimServer
    ) -> None:
        host, port = server.address
        frame = encode_frame(Command.STATUS, 1, b"")
        with socket.create_connection((host, port)) as raw:
            raw.sendall(frame[:9])
        time.sleep(0.3)
        with Board(server.url) as board:
            assert board.status().ready

    def test_oversized_length_is_refused_without_allocation(self, server: SimServer) -> None:
        host, port = server.address
        header = bytearray(encode_header(Command.MVM, 7, 0))
        header[8:12] = struct.pack("<I", 0xFFFFFFF0)
        import binascii

        header[14:16] = struct.pack("<H", binascii.crc_hqx(bytes(header[:14]), 0xFFFF))
        with socket.create_connection((host, port), timeout=5) as raw:
            raw.sendall(bytes(header))
            reply = raw.recv(4096)
        assert reply[:2] == b"\xa5\x5a" and reply[5] == 2  # FRAME_ERROR, no payload awaited
        message_length = struct.unpack_from("<I", reply, 8)[0]
        assert (
            zlib.crc32(reply[16 : 16 + message_length])
            == struct.unpack_from("<I", reply, 16 + message_length)[0]
        )
        assert server.board.decoder.buffered == 0
        with Board(server.url) as board:
            assert board.status().ready


def test_threads_share_one_board_safely() -> None:
    """One lock per link: a monitor polling STATUS while a procedure runs MVMs and reads."""
    import threading

    errors: list[BaseException] = []
    with Board("mockchip://?seed=6&cores=1") as board:
        inputs = np.ones((4, 256), np.int8)

        def monitor() -> None:
            try:
                for _ in range(200):
                    assert board.status().ready
                    assert board.scratch == 0
            except BaseException as exc:  # noqa: BLE001 - collected for the main thread
                errors.append(exc)

        def procedure() -> None:
            try:
                for _ in range(100):
                    assert board.mvm(0, inputs).positive.shape == (4, 256)
                    assert board.verify_read(0, [1, 2], [3, 4], [0, 2]).shape == (2,)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=f) for f in (monitor, procedure, monitor)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert board.link.stats.retries == 0 and board.link.stats.stale_replies == 0


def test_a_new_host_session_is_never_answered_from_the_old_one(server_url: str) -> None:
    """Sequence numbers start at random and the server forgets old replies on reconnect."""
    with Board(server_url) as first:
        first.apply_pulses(0, 1, 1, 0, "reset", 700, 125)
        first_seq = first.link._seq
    with Board(server_url) as second:
        assert second.link._seq != first_seq or second.link.stats.requests == 1
        before = int(second.verify_read(0, [1] * 8, [1] * 8, [0] * 8).mean())
        second.apply_pulses(0, 1, 1, 0, "set", 125, 250)
        after = int(second.verify_read(0, [1] * 8, [1] * 8, [0] * 8).mean())
        assert after > before + 20  # the SET really ran


def test_every_user_of_a_shared_link_learns_of_a_reset() -> None:
    """A monitor thread absorbing the reset must not let a procedure carry on unaware."""
    with Board("mockchip://?seed=2&cores=1&reset_after=4", timeout_s=0.05) as board:
        board.load_ldpu(0, LdpuCoefficients(relu=True))  # frame 2
        board.status()  # frame 3
        with pytest.raises(BoardResetError):
            board.status()  # frame 4 resets the board: the "monitor" learns first
        assert board.status().ready  # monitoring still works
        with pytest.raises(BoardResetError):  # the "procedure" learns too
            board.mvm(0, np.ones((2, 256), np.int8), output="ldpu")
        board.acknowledge_reset()
        board.load_ldpu(0, LdpuCoefficients(relu=True))
        assert board.read_ldpu(0).relu
