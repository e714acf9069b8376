"""The chipctl command line on the simulated chip."""

from __future__ import annotations

import pytest

from chipctl.cli import main
from chipctl.demo import run_demo


def test_demo_programs_and_reports_a_small_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--board", "mockchip://?seed=1&cores=1", "--batch", "64"]) == 0
    out = capsys.readouterr().out
    assert "SIM-HERMES-0001" in out
    assert "MVM error" in out and "cells within" in out


def test_demo_figures_are_physical() -> None:
    result = run_demo("mockchip://?seed=1&cores=1", batch=128)
    assert result.program.converged_fraction > 0.98
    assert 0 < result.program.iterations <= 30
    # Read noise, programming error and ADC quantisation make the raw MVM imperfect, but it must
    # follow W·x closely: a broken chain (wrong sign, wrong rows) would give errors near 100 %.
    assert 0.005 < result.mvm_error_per_row < 0.5
    assert result.mvm_error_per_row <= result.mvm_error_global + 1e-9


def test_identify_prints_the_board(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["identify", "--board", "mockchip://?seed=4&cores=2"]) == 0
    out = capsys.readouterr().out
    assert "SIM-HERMES-0004" in out and "n_cores" in out


def test_bad_board_url_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["identify", "--board", "mockchip://?cores=0"]) == 1
    err = capsys.readouterr().err
    assert "cores" in err and "LinkError" in err


def test_sim_serve_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "serve", "--port", "0", "--options", "bogus=1"]) == 2
    assert "unknown simulator option" in capsys.readouterr().err
