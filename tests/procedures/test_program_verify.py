"""Program-and-verify core on the simulated chip."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.board import Board
from drivers.errors import LimitError
from procedures.base import Checkpoint, Data, Start, Stop
from procedures.program_verify import ProgramVerify
from procedures.programming.iterative import ProgramSettings, program_core
from procedures.programming.targets import G_MAX_TDP_COUNTS, line_limited_g_max, weight_targets

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


# -- the ProgramVerify procedure ----------------------------------------------------------------


def _random_weights(seed: int, shape: tuple[int, ...] = (256, 256)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1, 1, shape)
    w[rng.random(shape) < 0.3] = 0
    return w


def _by_stream(records: list) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}
    for r in records:
        if isinstance(r, Data):
            out.setdefault(r.stream, []).append(r.values)
    return out


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"weights": np.zeros((2, 2, 256, 256))}, "shape"),  # (256, 255) is one tile now
        ({"weights": np.zeros((3, 256, 256)), "cores": [0, 1]}, "shape"),
        ({"weights": np.full((256, 256), np.nan)}, "NaN"),
        ({"weights": np.zeros((256, 256)), "cores": [64]}, "maximum"),
        ({"weights": np.zeros((256, 256)), "mode": "xdp"}, "xdp"),
        ({"weights": np.zeros((256, 256)), "tolerance_counts": 0}, "minimum"),
        ({"weights": np.zeros((256, 256)), "max_iterations": 1001}, "maximum"),
        ({}, "weights"),
    ],
)
def test_procedure_refuses_bad_parameters_before_anything_is_sent(values: dict, match: str) -> None:
    with Board("mockchip://?seed=1&cores=1") as board:
        sent = board.link.stats.frames_sent
        with pytest.raises(LimitError, match=match):
            ProgramVerify(**values)
        assert board.link.stats.frames_sent == sent


@pytest.fixture(scope="module")
def tdp_run() -> tuple[list, ProgramVerify]:
    weights = np.stack([_random_weights(3), _random_weights(4)])
    procedure = ProgramVerify(weights=weights, cores=[0, 1], mode="tdp", cores_per_group=2)
    with Board("mockchip://?seed=3&cores=2") as board:
        records = list(procedure.run(board))
    return records, procedure


def test_records_structure(tdp_run: tuple[list, ProgramVerify]) -> None:
    records, procedure = tdp_run
    assert isinstance(records[0], Start) and records[0].procedure == "program"
    assert records[0].default_plot == ("fraction_converged", "iteration")
    assert isinstance(records[-1], Stop) and records[-1].status == "success", records[-1].reason
    streams = _by_stream(records)
    declared = {s.name: s for s in procedure.streams()}
    for name, rows in streams.items():
        assert rows[0].shape == declared[name].shape, name
    iterations = [int(v) for v in streams["iteration"]]
    assert iterations[0] == 0 and iterations == sorted(iterations) and 1 < len(iterations) <= 31
    fractions = [float(v) for v in streams["fraction_converged"]]
    assert fractions[-1] > 0.98 and fractions[-1] >= fractions[1]
    p50, p90, p99 = streams["error_percentiles"][-1]
    assert p50 <= p90 <= p99 and p50 < 5
    assert [int(c) for c in streams["core"]] == [0, 1]
    assert streams["conductance"][0].dtype == np.uint16
    yield_map = streams["yield_map"][0]
    assert yield_map.dtype == np.uint8 and yield_map.max() <= 4
    assert 0.97 < np.mean(yield_map == 0) < 1.0  # ~1 % defective devices [LG §IV]
    assert np.median(np.abs(streams["cell_error"][0])) < 5
    # Gmax: 160 counts lowered by the 100 µA line-current limit for dense random weights.
    g_max = float(streams["g_max"][0])
    assert 20 < g_max < 160
    assert float(streams["w_max"][0]) == pytest.approx(np.abs(_random_weights(3)).max())
    assert sum(isinstance(r, Checkpoint) for r in records) == 1
    results = records[-1].results
    assert results["cores"]["1"]["converged_fraction"] > 0.98
    assert 0 < results["chip_time_s"] < 10 and results["cores"]["0"]["pulses"] > 262144


def test_line_current_limit_sets_gmax() -> None:
    w = np.zeros((256, 256))
    w[0, :100] = 1.0  # one row of 100 full-scale weights: 100·G·0.2 V ≤ 100 µA → G ≤ 5 µS
    g = line_limited_g_max(
        w, g_max_counts=160, mvm_mode=4, line_current_limit_ua=100, read_voltage_mv=200
    )
    assert g == pytest.approx(5.0 / (10.35 / 80))
    w[0, 100:150] = -1.0  # one-phase adds both polarities
    g1 = line_limited_g_max(
        w, g_max_counts=160, mvm_mode=1, line_current_limit_ua=100, read_voltage_mv=200
    )
    assert g1 == pytest.approx(g * 100 / 150)
    assert line_limited_g_max(
        w * 1e-3, g_max_counts=80, mvm_mode=4, line_current_limit_ua=1e6, read_voltage_mv=200
    ) == pytest.approx(80)


def test_abort_stops_cleanly_and_leaves_the_board_safe() -> None:
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    procedure = ProgramVerify(weights=_random_weights(5), cores=[0], mode="odp")
    with Board("mockchip://?seed=5&cores=1") as board:
        records = list(procedure.run(board, should_stop=stop_after_three))
        assert isinstance(records[-1], Stop) and records[-1].status == "aborted"
        assert not any(isinstance(r, Checkpoint) for r in records)
        assert board.status().status_register & 0x2 == 0  # write heads disabled


def test_resume_from_checkpoint_reproduces_the_uninterrupted_run() -> None:
    weights = np.stack([_random_weights(6), _random_weights(7)])
    params = {"weights": weights, "cores": [0, 1], "mode": "tdp", "cores_per_group": 1}
    url = "mockchip://?seed=8&cores=2"
    with Board(url) as board:
        full = _by_stream(list(ProgramVerify(**params).run(board)))
    with Board(url) as board:
        state = None
        for record in ProgramVerify(**params).run(board):
            if isinstance(record, Checkpoint):
                state = record.state
                break  # the run dies after group 1 of 2
    assert state is not None and state["groups_done"] == 1
    with Board(url) as board:  # a fresh board with the same seed
        board.advance_clock(state["board_time_s"])
        records = list(ProgramVerify(**params).run(board, resume_from=state))
    start, stop = records[0], records[-1]
    assert isinstance(start, Start) and isinstance(stop, Stop)
    assert start.resumed and stop.status == "success"
    resumed = _by_stream(records)
    assert [int(c) for c in resumed["core"]] == [1]
    for name in ("conductance", "cell_error", "yield_map", "g_max"):
        np.testing.assert_array_equal(resumed[name][0], full[name][1], err_msg=name)
    assert set(stop.results["cores"]) == {"0", "1"}


def test_odp_and_tdp_program_core_api_agree_on_targets() -> None:
    targets = weight_targets(_random_weights(9), g_max_counts=G_MAX_TDP_COUNTS)
    with Board("mockchip://?seed=9&cores=1") as board:
        result = program_core(board, 0, targets, mode="tdp")
    assert result.mode == "tdp" and result.converged_fraction > 0.98
    # TDP rule: one device where it can carry the weight, both where the weight exceeds it.
    r = result.reads
    positive = targets > 0
    pair = np.where(positive[..., None], r[..., :2], r[..., 2:])
    both = np.asarray((pair > 5).all(axis=-1))
    big = np.abs(targets) > 150
    single_enough = np.asarray(pair.max(axis=-1) >= np.abs(targets) - 5)
    assert 0.2 < both[big].mean() < 1.0
    assert (both | single_enough)[big].mean() > 0.97
    assert both[np.abs(targets) < 30].mean() < 0.01
