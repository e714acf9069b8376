"""Calibration of the per-ADC gains on the simulated chip [KA §III-D/E; chip.md §2b].

Targets: the per-ADC gain spread relative to the programmed targets is ~7 % before calibration
and below 0.5 % after (four-phase); the calibrated MVM error measured by ``characterize``.
"""

from __future__ import annotations

import numpy as np
import pytest

from drivers.board import Board
from drivers.errors import LimitError
from procedures.base import Data, Stop
from procedures.calibrate import Calibrate, fit_adc, gain_fit
from procedures.characterize import Characterize
from procedures.program_verify import ProgramVerify


def _run(procedure: object, board: Board) -> Stop:
    records = list(procedure.run(board))  # type: ignore[attr-defined]
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "success", stop.reason
    return stop


@pytest.fixture(scope="module")
def four_phase() -> tuple[Stop, list[Data]]:
    with Board("mockchip://?seed=1&cores=2") as board:
        records = list(Calibrate(cores=[0, 1], mode=4, program_reference=True).run(board))
        assert board.read_ldpu(1).gain_pos.std() > 0.03  # loaded onto the LDPU
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "success", stop.reason
    return stop, [r for r in records if isinstance(r, Data)]


def test_gain_spread_before_is_the_trim_residual(four_phase: tuple[Stop, list[Data]]) -> None:
    results = four_phase[0].results
    # σ 7.09 % MVM trim ⊕ 2 % verify configuration, truncated at ±21 % (drivers/sim/adc.py)
    assert 0.06 < results["gain_spread_before"] < 0.085


def test_gain_spread_after_is_below_half_a_percent(four_phase: tuple[Stop, list[Data]]) -> None:
    results = four_phase[0].results
    assert results["gain_spread_after"] < 0.005
    for core in results["per_core"].values():
        assert abs(core["validated_gain_mean"] - 1.0) < 0.01
        # against the read-back conductances: 10.0 % → 7.5 %; what remains is read noise and
        # the ADC non-linearity (ε_residual ≈ 6 %) plus int8 rounding
        assert core["mvm_error_readback_after"] < 0.8 * core["mvm_error_readback_before"]


def test_coefficients_stream_per_core(four_phase: tuple[Stop, list[Data]]) -> None:
    gains = [d.values for d in four_phase[1] if d.stream == "gain_pos"]
    assert len(gains) == 2 and all(g.shape == (256,) for g in gains)
    assert four_phase[0].results["calibration_set_id"].startswith("cal-")


def test_one_phase_fits_both_mirrors() -> None:
    with Board("mockchip://?seed=1&cores=1") as board:
        stop = _run(
            Calibrate(cores=[0], mode=1, program_reference=True, n_inputs=4096, n_validation=4096),
            board,
        )
        ldpu = board.read_ldpu(0)
    # separate positive and negative mirror gains (independent 7 % spreads)
    ratio = ldpu.gain_pos.astype(float) / ldpu.gain_neg.astype(float)
    assert ratio.std() > 0.05
    assert stop.results["gain_spread_before"] > 0.06
    assert stop.results["gain_spread_after"] < 0.01


def test_fit_recovers_known_gains() -> None:
    rng = np.random.default_rng(3)
    t = rng.normal(0, 100, (512, 256))
    gain = 1 + 0.07 * rng.standard_normal(256)
    p = np.maximum(t, 0) * gain + 2.0
    n = np.maximum(-t, 0) * gain + 2.0
    u_pos, u_neg, _, rms = fit_adc(t, p, n, 4)
    assert np.allclose(u_pos * gain, 1, atol=1e-9) and np.allclose(u_neg, u_pos)
    assert rms.max() < 1e-6
    g = gain_fit(t * gain, t, 4, np.ones_like(t, bool))
    assert np.allclose(g[0], gain)


def test_fit_names_a_row_it_cannot_fit_and_why() -> None:
    """A one-phase row whose current never turns negative leaves its negative counter at 0: the
    error names the row and the cause, not all-zero weights; a row that never varies says so."""
    rng = np.random.default_rng(4)
    t = rng.normal(0, 100, (64, 256))
    p = np.maximum(t, 0) + rng.integers(0, 3, t.shape)
    n = np.maximum(-t, 0) + rng.integers(0, 3, t.shape)
    one_signed = p.copy(), n.copy()
    one_signed[1][:, 218] = 0
    with pytest.raises(LimitError, match=r"row 218: its negative counter stayed 0 for all 64 "):
        fit_adc(t, *one_signed, 1)
    fit_adc(t, *one_signed, 4)  # four-phase fits P − N: one counter at 0 is fine
    flat = p.copy(), n.copy()
    flat[0][:, 5] = flat[1][:, 5] = 0
    with pytest.raises(LimitError, match=r"row 5: its counts do not vary over the 64"):
        fit_adc(t, *flat, 4)


def test_calibrated_characterize_error() -> None:
    """Uncalibrated: raw P − N with the best single scale (generous to it); calibrated: int8
    LDPU outputs mapped by the calibration's own affine and k̄, nothing fitted."""
    from chipctl.demo import random_weights

    w = random_weights(0)
    with Board("mockchip://?seed=1&cores=1") as board:
        program = _run(ProgramVerify(weights=w, cores=[0], mode="tdp"), board)
        g_max = program.results["cores"]["0"]["g_max_counts"]
        raw = _run(Characterize(weights=w, cores=[0], n_inputs=1024), board).results
        cal = _run(Calibrate(cores=[0], program_reference=False), board).results
        ldpu = _run(
            Characterize(
                weights=w, cores=[0], n_inputs=1024, output="ldpu",
                counts_per_unit=cal["counts_per_unit"], g_max_counts=g_max,
            ),
            board,
        ).results  # fmt: skip
    # the ADC gain spread is part of ε_linear; calibration removes it
    assert ldpu["eps_linear_mean"] < raw["eps_linear_mean"] - 0.01
    assert ldpu["eps_total_mean"] < raw["eps_total_mean"]
    # Not half: the programming error (~9 % of ‖Wx‖ at the line-limited Gmax) dominates.
    assert ldpu["eps_total_mean"] > 0.5 * raw["eps_total_mean"]


def test_ldpu_output_needs_the_calibration_scale() -> None:
    from drivers.errors import LimitError

    with pytest.raises(LimitError, match="counts_per_unit"):
        Characterize(weights=np.ones((256, 256)), output="ldpu")


def _stop_after_checkpoints(n: int) -> tuple[object, object]:
    """A runner subscriber counting checkpoints and a should_stop true after ``n`` of them."""
    from procedures.base import Checkpoint

    seen = {"n": 0}

    def count(record: object) -> None:
        seen["n"] += isinstance(record, Checkpoint)

    return count, lambda: seen["n"] >= n


def test_resume_on_a_fresh_chip_reproduces_the_uninterrupted_run(tmp_path: object) -> None:
    """Stopped after the first group (checkpoints: start, group 1), resumed on a fresh simulated
    chip of the same seed: every stream, the results and the stored set equal a whole run."""
    from pathlib import Path

    from chipctl.calibration import CalibrationRecorder, CalibrationStore
    from chipctl.resume import resume_run
    from chipctl.runfile import RunFile
    from chipctl.runner import run_procedure

    tmp = Path(str(tmp_path))
    url = "mockchip://?seed=6&cores=3"
    params: dict[str, object] = {
        "cores": "0-2", "cores_per_group": 1, "n_inputs": 256, "n_validation": 256,
        "verify_reads": 1, "reference_mode": "odp", "set_id": "cal-resume",
        "program_reference": True,
    }  # fmt: skip
    whole_store, resumed_store = tmp / "whole", tmp / "resumed"
    with Board(url) as board:
        summary = run_procedure(
            Calibrate(**params), board, tmp / "whole.h5", progress=False,
            subscribers=[CalibrationRecorder(CalibrationStore(whole_store))],
        )  # fmt: skip
    assert summary.status == "success"
    count, stop = _stop_after_checkpoints(2)
    procedure = Calibrate(**params)
    procedure.calibration_store = str(resumed_store)
    with Board(url) as board:
        summary = run_procedure(
            procedure, board, tmp / "resumed.h5", progress=False, should_stop=stop,
            subscribers=[count],
        )  # fmt: skip
    assert summary.status == "aborted"
    assert resume_run(tmp / "resumed.h5", progress=False).status == "success"
    with RunFile.open(tmp / "whole.h5") as a, RunFile.open(tmp / "resumed.h5") as b:
        assert [c["state"]["groups_done"] for c in b.checkpoints] == [0, 1, 2, 3]
        assert b.metadata["calibration_set_id"] == "cal-resume"
        for name in a.streams:
            np.testing.assert_array_equal(a.stream(name), b.stream(name), err_msg=name)
        ra, rb = a.results, b.results
        ra.pop("created"), rb.pop("created")
        assert ra == rb
    whole = np.load(whole_store / "SIM-HERMES-0006" / "cal-resume.npz")
    resumed = np.load(resumed_store / "SIM-HERMES-0006" / "cal-resume.npz")
    for name in ("gain_pos", "gain_neg", "offset_pos", "affine_scale"):
        np.testing.assert_array_equal(whole[name], resumed[name], err_msg=name)
