"""The simulated board's duplicate memory: replies kept for retransmissions, bounded in count
and in bytes, the byte count kept as replies come and go."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.link.payloads import OUTPUT_RAW, MvmRequest
from drivers.link.protocol import Command, ErrorCode, decode_frame, encode_chunks
from drivers.sim import board_model
from drivers.sim.board_model import SimulatedBoard
from drivers.sim.chip import SimulatedChip


def _mvm_frame(seq: int, batch: int) -> bytes:
    x = np.full((1, batch, 256), seq % 100, np.int8)
    request = MvmRequest(mode=1, output=OUTPUT_RAW, cores=np.array([0], np.uint8), inputs=x)
    return encode_chunks(int(Command.MVM), seq, request.chunks())


def test_duplicate_memory_is_bounded_in_bytes_and_answers_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(board_model, "DUPLICATE_MEMORY_BYTES", 40_000)
    board = SimulatedBoard(SimulatedChip(rng=np.random.default_rng(0), n_cores=1))
    sizes = []
    for seq in range(1, 13):  # replies of 1 kB to 32 kB: the byte cap, not the count, binds
        (reply,) = board.receive(_mvm_frame(seq, 1 + 8 * (seq % 5)))
        sizes.append(len(reply))
        kept = [len(r) for r in board._replies.values()]
        assert board._replies_bytes == sum(kept)
        assert sum(kept) <= 40_000 or len(kept) == 1
        assert board.receive(_mvm_frame(seq, 1 + 8 * (seq % 5))) == [reply]  # a retry: kept
    assert len(board._replies) < 12 and max(sizes) > 30_000
    board.power_cycle()
    assert board._replies_bytes == 0 and not board._replies


@pytest.mark.parametrize(
    ("batch", "where"),
    [(1, 0), (1, 255), (2, 300), (100, 0), (100, 25_599), (300, 40_000)],  # both sides of the
)  # size where the check switches from a byte search to numpy's min
def test_an_mvm_input_of_minus_128_is_refused_by_the_board(batch: int, where: int) -> None:
    board = SimulatedBoard(SimulatedChip(rng=np.random.default_rng(0), n_cores=1))
    x = np.zeros((1, batch, 256), np.int8)
    x.flat[where] = -128
    request = MvmRequest(mode=4, output=OUTPUT_RAW, cores=np.array([0], np.uint8), inputs=x)
    (reply,) = board.receive(encode_chunks(int(Command.MVM), 1, request.chunks()))
    frame = decode_frame(reply)
    assert frame.is_error and frame.status == ErrorCode.OUT_OF_RANGE
    assert b"-128" in bytes(frame.payload)
    x.flat[where] = -127  # the same request with -127 runs
    request = MvmRequest(mode=4, output=OUTPUT_RAW, cores=np.array([0], np.uint8), inputs=x)
    (reply,) = board.receive(encode_chunks(int(Command.MVM), 2, request.chunks()))
    assert not decode_frame(reply).is_error
