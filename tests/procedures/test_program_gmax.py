"""``chipctl program --gmax-inputs X.npy``: Gmax from the workload (issue 15, item 6, last part).

Through the command line on the simulated chip: with sparse inputs the workload rule gives
each core a Gmax at or above the worst-case rule's, computed from that core's own columns of the
inputs (a matrix tiled over two cores), the inputs do not saturate the programmed cores, and the
chosen and worst-case Gmax and the measured saturation are in the run file. Bad input files and
``--gmax workload`` without inputs are refused before the board (exit 2, no run file, nothing in
the chip ledger).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chipctl.cli import main
from chipctl.ledger import Ledger
from chipctl.runfile import RunFile
from drivers.board import Board
from procedures.programming.gmax import workload_g_max
from procedures.programming.targets import G_MAX_TDP_COUNTS, line_limited_g_max

URL = "mockchip://?seed=8&cores=2"
ROWS, COLS = 200, 512  # tiled into two 200×256 tiles, one per core


def _weights(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (ROWS, COLS))


def _relu_codes(n: int, seed: int = 2) -> np.ndarray:
    """Post-ReLU-like int8 inputs, mostly below full scale: 30 % zeros in the first 256
    columns, 50 % in the others (so the two cores' slices ask for different Gmax)."""
    rng = np.random.default_rng(seed)
    x = np.rint(np.abs(rng.normal(0, 60, (n, COLS))))
    zero_fraction = np.where(np.arange(COLS) < 256, 0.3, 0.5)
    x[rng.random(x.shape) < zero_fraction] = 0
    return np.clip(x, 0, 127).astype(np.int8)


def _program(tmp_path: Path, *extra: str) -> tuple[int, Path]:
    np.save(tmp_path / "w.npy", _weights())
    out = tmp_path / "program.h5"
    code = main(["program", "--board", URL, "--weights", str(tmp_path / "w.npy"),
                 "--cores", "0-1", "--max-iterations", "4", "--no-progress",
                 "--out", str(out), *extra])  # fmt: skip
    return code, out


def _padded_slice(a: np.ndarray, c0: int, c1: int) -> np.ndarray:
    out = np.zeros((a.shape[0], 256))
    out[:, : c1 - c0] = a[:, c0:c1]
    return out


@pytest.fixture(autouse=True)
def _own_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHIPCTL_CALIBRATION_DIR", str(tmp_path / "store"))


def _ledger_state() -> dict[int, dict[str, object]]:
    with Board(URL) as board:
        return Ledger.of(board.identity.chip_id).state()


def test_workload_gmax_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = _relu_codes(96)
    np.save(tmp_path / "x.npy", x)
    code, out = _program(tmp_path, "--gmax-inputs", str(tmp_path / "x.npy"))
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "Gmax (workload rule, 99.9 % of 96 input vectors):" in printed.out
    with RunFile.open(out) as run:
        cores = [int(c) for c in run.stream("core")]
        g_max = np.asarray(run.stream("g_max"), np.float64)
        worst = np.asarray(run.stream("g_max_worst_case"), np.float64)
        saturated = np.asarray(run.stream("saturated_fraction"), np.float64)
        results = run.results
    assert cores == [0, 1]
    w = _weights()
    for k, core in enumerate(cores):
        c0, c1 = 256 * core, 256 * (core + 1)
        tile = np.zeros((256, 256))
        tile[:ROWS, : c1 - c0] = w[:, c0:c1]
        # The core's Gmax comes from its own columns of the inputs (read voltage of the mock).
        with Board(URL) as board:
            read_mv = float(board.mvm_read_voltage_mv)
        limits: dict[str, Any] = {"g_max_counts": G_MAX_TDP_COUNTS, "mvm_mode": 4,
                  "line_current_limit_ua": 100.0, "read_voltage_mv": read_mv}  # fmt: skip
        expected = workload_g_max(tile, _padded_slice(x, c0, c1), quantile=99.9, **limits)
        assert g_max[k] == pytest.approx(expected, rel=1e-6)
        assert worst[k] == pytest.approx(line_limited_g_max(tile, **limits), rel=1e-6)
        # Sparse, sub-full-scale inputs: clearly more Gmax than the worst case, below TDP's cap.
        assert worst[k] * 1.5 < g_max[k] < G_MAX_TDP_COUNTS
        summary = results["cores"][str(core)]
        assert summary["g_max_rule"] == "workload"
        assert summary["g_max_counts"] == pytest.approx(g_max[k], rel=1e-6)
        assert summary["g_max_worst_case_counts"] == pytest.approx(worst[k], rel=1e-6)
        assert summary["saturated_fraction"] == pytest.approx(saturated[k], abs=1e-6)
    assert g_max[0] < 0.9 * g_max[1]  # the denser columns on core 0 drive more current
    assert f"core 1: {g_max[1]:.1f} counts (worst case {worst[1]:.1f})" in printed.out
    # The rule keeps 99.9 % of the inputs under the (gain-spread-lowered) limit: measured on the
    # chip, at most a few of the 96 inputs saturate a conversion.
    assert saturated.max() <= 2 / 96
    assert results["saturation_core_mvms"] == 2 * 96 * 2  # two polarities, 96 inputs, 2 cores


def test_without_inputs_the_worst_case_rule_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _program(tmp_path)
    assert code == 0, capsys.readouterr().err
    with RunFile.open(out) as run:
        assert "saturated_fraction" not in run.streams
        assert run.results["cores"]["0"]["g_max_rule"] == "worst-case"
        g = run.results["cores"]["0"]
        assert g["g_max_counts"] == pytest.approx(g["g_max_worst_case_counts"])


def _bad(tmp_path: Path, name: str, array: np.ndarray) -> list[str]:
    np.save(tmp_path / name, array)
    return ["--gmax-inputs", str(tmp_path / name)]


@pytest.mark.parametrize(
    ("array", "fragments"),
    [
        (np.full((8, COLS), 0.25), ("non-integer values (e.g. 0.25)", "int8", "-127..127")),
        (np.full((8, COLS), 200, np.int16), ("codes from 200 to 200", "-127..127")),
        (np.zeros((8, 256), np.int8), ("shape (8, 256)", "(n, 512)", "200×512 matrix")),
        (np.zeros((0, COLS), np.int8), ("empty", "(n, 512)")),
        (np.zeros((2, 8, COLS), np.int8), ("shape (2, 8, 512)", "(n, 512)")),
        (np.where(np.eye(8, COLS) > 0, np.nan, 1.0), ("NaN",)),
    ],
)
def test_bad_input_files_are_refused_before_the_board(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], array: np.ndarray, fragments: tuple[str]
) -> None:
    code, out = _program(tmp_path, *_bad(tmp_path, "x.npy", array))
    err = capsys.readouterr().err
    assert code == 2 and "gmax_inputs" in err, err
    for fragment in fragments:
        assert fragment in err, err
    assert not out.exists()
    assert _ledger_state() == {}


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--gmax", "workload"), "needs the inputs the cores will see"),
        (("--gmax", "workload", "--g-max-counts", "100"), "give one of the two"),
    ],
)
def test_workload_without_inputs_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], fragment: str
) -> None:
    if "--g-max-counts" in extra:
        extra = (*extra, *_bad(tmp_path, "x.npy", _relu_codes(4)))
    code, out = _program(tmp_path, *extra)
    err = capsys.readouterr().err
    assert code == 2 and fragment in err, err
    assert not out.exists() and _ledger_state() == {}


def test_saturation_is_measured_where_the_gmax_is_too_high(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A fixed TDP Gmax with dense full-scale inputs drives the bit lines past the ADC range.
    np.save(tmp_path / "x.npy", np.full((16, COLS), 127, np.int8))
    code, out = _program(tmp_path, "--g-max-counts", "160", "--gmax-inputs",
                         str(tmp_path / "x.npy"))  # fmt: skip
    assert code == 0, capsys.readouterr().err
    with RunFile.open(out) as run:
        saturated = np.asarray(run.stream("saturated_fraction"), np.float64)
        worst = np.asarray(run.stream("g_max_worst_case"), np.float64)
        assert run.results["cores"]["1"]["g_max_rule"] == "fixed"
    assert worst.max() < 160 and saturated.min() == 1.0


def test_a_cut_run_resumes_with_its_inputs(tmp_path: Path) -> None:
    from chipctl.resume import resume_run
    from chipctl.runner import run_procedure
    from procedures.base import Checkpoint, Record
    from procedures.program_verify import ProgramVerify

    checkpoints: list[Record] = []

    def count(record: Record) -> None:
        if isinstance(record, Checkpoint):
            checkpoints.append(record)

    x = _relu_codes(32)
    procedure = ProgramVerify(weights=_weights(), cores=[0, 1], cores_per_group=1,
                              max_iterations=4, gmax_inputs=x)  # fmt: skip
    path = tmp_path / "cut.h5"
    with Board(URL) as board:
        cut = run_procedure(procedure, board, path, progress=False, subscribers=[count],
                            should_stop=lambda: bool(checkpoints))  # fmt: skip
    assert cut.status == "aborted"
    resumed = resume_run(path, progress=False)
    assert resumed.status == "success", resumed.reason
    with RunFile.open(path) as run:
        assert [int(c) for c in run.stream("core")] == [0, 1]
        g_max = np.asarray(run.stream("g_max"), np.float64)
        worst = np.asarray(run.stream("g_max_worst_case"), np.float64)
        assert np.all(g_max > 1.5 * worst)
        assert np.asarray(run.stream("saturated_fraction")).shape == (2,)
        cores = run.results["cores"]
    assert all(cores[c]["g_max_rule"] == "workload" and "saturated_fraction" in cores[c]
               for c in ("0", "1"))  # fmt: skip
