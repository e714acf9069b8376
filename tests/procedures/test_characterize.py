"""MVM-error characterisation [LG §IV] on the simulated chip."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.board import Board
from drivers.errors import LimitError
from procedures.base import Data, Stop
from procedures.characterize import Characterize, mvm_errors, random_inputs
from procedures.programming.iterative import program_core
from procedures.programming.targets import weight_targets


def test_decomposition_on_an_ideal_linear_chip() -> None:
    rng = np.random.default_rng(0)
    weights = rng.uniform(-1, 1, (256, 256))
    inputs = random_inputs(rng, 1024, 0.3)
    exact = np.rint(3.0 * (inputs.astype(float) @ weights.T)).astype(np.int32)
    result = mvm_errors(weights, inputs, exact)
    assert result["scale"] == pytest.approx(1 / 3, rel=1e-6)
    assert np.all(result["relative"] < 1e-3)
    assert result["weight_error"] < 1e-3
    # a known programming error shows up as ε_linear, noise as ε_residual
    skewed = np.rint(
        3.0 * (inputs.astype(float) @ (1.1 * weights).T + rng.normal(0, 20, exact.shape))
    )
    result = mvm_errors(weights, inputs, skewed.astype(np.int32))
    total, linear, residual = result["relative"]
    assert total**2 == pytest.approx(linear**2 + residual**2, rel=1e-6)  # LS orthogonality
    assert residual > 0.01
    assert result["histograms"].sum(axis=1).tolist() == [1024 * 256] * 3


def test_inputs_follow_the_published_statistics() -> None:
    x = random_inputs(np.random.default_rng(1), 4096, 0.3)
    assert x.dtype == np.int8 and x.min() >= -127 and x.max() <= 127
    assert np.mean(x == 0) == pytest.approx(0.3 + 0.7 / 255, abs=0.01)


@pytest.fixture(scope="module")
def characterised() -> tuple[list, np.ndarray]:
    rng = np.random.default_rng(5)
    weights = rng.uniform(-1, 1, (256, 256))
    weights[rng.random(weights.shape) < 0.3] = 0
    with Board("mockchip://?seed=5&cores=1") as board:
        program_core(board, 0, weight_targets(weights))
        records = list(Characterize(weights=weights, cores=[0], n_inputs=1024).run(board))
    return records, weights


def test_characterize_reports_the_three_errors(characterised: tuple) -> None:
    records, _ = characterised
    assert isinstance(records[-1], Stop) and records[-1].status == "success", records[-1]
    data = {r.stream: r.values for r in records if isinstance(r, Data)}
    total, linear, residual = (float(data[f"eps_{n}"]) for n in ("total", "linear", "residual"))
    assert total**2 == pytest.approx(linear**2 + residual**2, rel=1e-3)
    # One-device programming within 5 counts of up to 80 counts, plus read noise: a few to ~20 %.
    assert 0.02 < total < 0.25
    assert data["effective_weights"].shape == (256, 256)


def test_characterize_refuses_bad_weights_before_the_board() -> None:
    with pytest.raises(LimitError, match="all zero"):
        Characterize(cores=[0])
    with pytest.raises(LimitError, match="shape"):
        Characterize(weights=np.ones((2, 256, 256)), cores=[0])
    with pytest.raises(LimitError, match="NaN"):
        Characterize(weights=np.full((256, 256), np.nan))
    with pytest.raises(LimitError, match="mode"):
        Characterize(weights=np.ones((256, 256)), mode=2)


def test_a_resumed_run_reports_the_means_over_every_core(tmp_path: object) -> None:
    """The finished cores' errors come back from the run file (resume_streams), so the means
    of a resumed run equal the uninterrupted run's, not those of the cores after the resume."""
    from pathlib import Path

    from chipctl.resume import resume_run
    from chipctl.runfile import RunFile
    from chipctl.runner import run_procedure

    weights = np.random.default_rng(3).normal(size=(256, 256))
    params = {"weights": weights, "cores": [0, 1, 2], "n_inputs": 256}
    url = "mockchip://?seed=5&cores=3"
    folder = Path(str(tmp_path))
    with Board(url) as board:
        whole = run_procedure(Characterize(**params), board, folder / "whole.h5", progress=False)
    polls = {"n": 0}

    def stop_in_the_second_core() -> bool:
        polls["n"] += 1
        return polls["n"] > 3

    with Board(url) as board:
        cut = run_procedure(
            Characterize(**params),
            board,
            folder / "cut.h5",
            progress=False,
            should_stop=stop_in_the_second_core,
        )
    assert cut.status == "aborted"
    with RunFile.open(folder / "cut.h5") as run:
        assert len(run.stream("eps_total")) == 1, "the cut lands after the first core"
    resumed = resume_run(folder / "cut.h5", progress=False)
    assert resumed.status == "success" and resumed.results == whole.results
