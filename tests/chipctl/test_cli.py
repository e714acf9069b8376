"""The chipctl command line on the simulated chip."""

from __future__ import annotations

from pathlib import Path

import pytest

from chipctl.cli import main
from chipctl.demo import run_demo


def test_demo_programs_characterises_and_writes_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--board", "mockchip://?seed=1&cores=2", "--inputs", "512"]
    assert main([*argv, "--out-dir", str(tmp_path), "--infer-samples", "100"]) == 0
    out = capsys.readouterr().out
    assert "SIM-HERMES-0001" in out and "ε_total" in out
    assert "calibrated" in out and "drift compensation" in out
    # two cores: the digits MLP stands in for the CNN
    assert "digits_mlp on digits (100 test samples)" in out and "adabs" in out
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == [
        "characterize-odp-calibrated.h5",
        "characterize-odp.h5",
        "characterize-tdp-calibrated.h5",
        "characterize-tdp.h5",
        "drift.h5",
        "infer.h5",
        "power_down.h5",
        "power_up.h5",
        "program-odp.h5",
        "program-tdp.h5",
    ]


def test_demo_figures_are_physical(tmp_path: Path) -> None:
    result = run_demo("mockchip://?seed=1&cores=2", out_dir=tmp_path, n_inputs=512, progress=False)
    odp, tdp = result.modes
    for mode in (odp, tdp):
        assert mode.program.status == mode.characterize.status == "success"
        assert mode.core_results["converged_fraction"] > 0.98
        assert 0 < mode.core_results["iterations"] <= 30
        # Programming error, read noise and ADC make the MVM imperfect, but a broken chain
        # (wrong sign, wrong rows) would give errors near 100 %.
        assert 0.02 < mode.characterize.results["eps_total_mean"] < 0.3
    # two devices per polarity halve the programming error [LG §2a]
    assert tdp.characterize.results["eps_linear_mean"] < odp.characterize.results["eps_linear_mean"]
    # the shipped factory set calibrates the per-ADC gains: ε_linear drops on both cores
    assert result.calibration.startswith("stored set")
    for mode in (odp, tdp):
        assert mode.calibrated is not None and mode.calibrated.status == "success"
        calibrated = mode.calibrated.results["eps_linear_mean"]
        assert calibrated < mode.characterize.results["eps_linear_mean"] - 0.01
    assert result.drift is not None and result.drift.status == "success"
    assert max(result.drift.results["scale_error_gdc"]) < 0.02
    assert min(result.drift.results["scale_error"]) > 0.15
    assert result.inference is not None and result.inference.status == "success"
    inference = result.inference.results
    assert inference["model"] == "digits_mlp" and inference["samples"] == 359
    for compensation in ("gdc", "adabs"):
        assert inference["accuracy"][compensation]["1d"] >= inference["software_accuracy"] - 0.02


def test_identify_prints_the_board(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["identify", "--board", "mockchip://?seed=4&cores=2"]) == 0
    out = capsys.readouterr().out
    assert "SIM-HERMES-0004" in out and "n_cores" in out


def test_bad_board_url_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["identify", "--board", "mockchip://?cores=0"]) == 2  # refused input
    err = capsys.readouterr().err
    assert "cores" in err and "BadUrlError" in err


def test_sim_serve_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "serve", "--port", "0", "--options", "bogus=1"]) == 2
    assert "unknown simulator option" in capsys.readouterr().err


def test_scripts_import_the_public_api() -> None:
    import chipctl
    from chipctl import Board, ProgramVerify, run_procedure

    assert run_procedure.__module__ == "chipctl.runner"
    assert Board.__name__ == "Board" and ProgramVerify.name == "program"
    with pytest.raises(AttributeError):
        _ = chipctl.does_not_exist
