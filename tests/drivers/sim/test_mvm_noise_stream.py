"""MVM noise on a virtual clock depends only on (chip, core, clock at the last move), so a run
resumed on a fresh chip that skips MVMs it already has draws what the uninterrupted run drew."""

from __future__ import annotations

import numpy as np

from drivers.board import Board

X = np.random.default_rng(0).integers(-127, 128, (2, 64, 256))


def _after_advance(extra_mvms: int, *, seed: int = 3) -> np.ndarray:
    with Board(f"mockchip://?seed={seed}&cores=2") as board:
        for _ in range(extra_mvms):
            board.mvm([0, 1], X)
        board.advance_clock(100.0 - board.board_time_s())
        return board.mvm([0, 1], X).positive


def test_noise_after_a_clock_move_ignores_earlier_mvms() -> None:
    np.testing.assert_array_equal(_after_advance(0), _after_advance(3))


def test_noise_still_differs_between_calls_cores_and_chips() -> None:
    with Board("mockchip://?seed=3&cores=2") as board:
        first = board.mvm([0, 1], X).positive.astype(int)
        second = board.mvm([0, 1], X).positive.astype(int)
    assert np.any(first != second)  # consecutive MVMs draw fresh noise
    assert np.any(_after_advance(0) != _after_advance(0, seed=4))
