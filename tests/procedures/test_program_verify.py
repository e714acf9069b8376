"""Program-and-verify core on the simulated chip."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.board import Board
from drivers.errors import LimitError
from procedures.program_verify import ProgramSettings, program_core, weight_targets

COUNTS_PER_US = 80 / 10.35


@pytest.fixture(scope="module")
def programmed() -> tuple[np.ndarray, object, np.ndarray]:
    rng = np.random.default_rng(11)
    weights = rng.uniform(-1, 1, (256, 256))
    weights[rng.random(weights.shape) < 0.3] = 0
    with Board("mockchip://?seed=11&cores=1") as board:
        targets = weight_targets(weights)
        result = program_core(board, 0, targets)
        chip = board.link.port.board.chip  # ground truth, test-only back door
        g = chip.conductance_us(0) * COUNTS_PER_US
    return targets, result, g


def test_cells_reach_their_targets(programmed: tuple) -> None:
    targets, result, _ = programmed
    assert result.converged_fraction > 0.995
    assert 1 <= result.iterations <= 30
    assert result.converged_per_iteration[-1] > 0.99
    error = result.cell_reads - targets
    assert np.median(np.abs(error)) < 5


def test_true_conductances_follow_the_targets(programmed: tuple) -> None:
    targets, result, g = programmed
    cell = (g[..., 0] + g[..., 1]) - (g[..., 2] + g[..., 3])
    relative = np.linalg.norm(cell - targets) / np.linalg.norm(targets)
    # The 5-count tolerance on targets of up to 80 counts bounds what ODP can do (~3 bit) [LG §IV].
    assert relative < 0.15


def test_stuck_high_devices_are_compensated(programmed: tuple) -> None:
    targets, result, g = programmed
    stuck_cells = result.stuck_high.any(axis=-1)
    assert stuck_cells.sum() > 10  # the simulated chip has stuck devices (yield)
    cell = (g[..., 0] + g[..., 1]) - (g[..., 2] + g[..., 3])
    error = np.abs(cell - targets)[stuck_cells]
    # an uncompensated stuck device adds a whole SET conductance (~120 counts)
    assert np.median(error) < 15


def test_bad_targets_are_refused_before_anything_is_sent() -> None:
    with Board("mockchip://?seed=1&cores=1") as board:
        sent = board.link.stats.frames_sent
        with pytest.raises(LimitError, match="shape"):
            program_core(board, 0, np.zeros((256, 255)))
        with pytest.raises(LimitError, match="finite"):
            program_core(board, 0, np.full((256, 256), np.nan))
        assert board.link.stats.frames_sent == sent
    with pytest.raises(LimitError, match="NaN"):
        weight_targets(np.full((256, 256), np.inf))
    with pytest.raises(LimitError, match="w_max"):
        weight_targets(np.zeros((256, 256)))
    with pytest.raises(LimitError, match="melt_range"):
        ProgramSettings(melt_range_ua=(700, 200))
