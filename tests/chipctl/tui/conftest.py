"""Fixtures of the TUI tests: run files made on the simulated chip, a weights file, helpers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from textual.pilot import Pilot

from chipctl import catalog
from chipctl.runner import run_procedure
from drivers.board import Board


@pytest.fixture(autouse=True)
def own_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own calibration store, so its chip ledger: every simulated chip is
    SIM-HERMES-0001, and what other tests programmed must not show up as this one's."""
    store = tmp_path / "calibration-store"
    monkeypatch.setenv("CHIPCTL_CALIBRATION_DIR", str(store))
    return store


def make_weights(path: Path, seed: int = 0) -> Path:
    """A (256, 256) weights file."""
    np.save(path, np.random.default_rng(seed).normal(size=(256, 256)))
    return path


@pytest.fixture(scope="session")
def run_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with program (cores 0, 1), calibrate (core 2), drift and characterize
    (core 0) runs, under fixed names and modification times (snapshot tests show them)."""
    directory = tmp_path_factory.mktemp("runs")
    weights = np.random.default_rng(0).normal(size=(256, 256))
    runs = [
        ("program-a.h5", "program", {"weights": weights, "cores": [0, 1]}),
        (
            "calibrate-b.h5",
            "calibrate",
            {
                "cores": [2],
                "program_reference": True,
                "n_inputs": 256,
                "n_validation": 128,
                "set_id": "fixture",
            },
        ),
        ("drift-c.h5", "drift", {"cores": [0], "until": 1000.0, "points": 5, "sample": 64}),
        ("characterize-d.h5", "characterize", {"weights": weights, "cores": [0], "n_inputs": 256}),
    ]
    # The fixture's own ledger, so a test sees the same chip map whether or not it made them.
    with pytest.MonkeyPatch.context() as patch, Board("mockchip://?seed=1") as board:
        patch.setenv("CHIPCTL_CALIBRATION_DIR", str(tmp_path_factory.mktemp("fixture-store")))
        for number, (name, procedure, values) in enumerate(runs):
            path = directory / name
            summary = run_procedure(catalog.build(procedure, values), board, path, progress=False)
            assert summary.status == "success", summary.reason
            stamp = 1_700_000_000 + number
            import os

            os.utime(path, (stamp, stamp))
    return directory


async def wait_until(
    pilot: Pilot[None], condition: Callable[[], bool], timeout_s: float = 60.0
) -> None:
    """Let the app run until ``condition()`` holds (fails after ``timeout_s``: a bound for a
    loaded machine, not a timing claim)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {condition}")
        await pilot.pause(0.05)
