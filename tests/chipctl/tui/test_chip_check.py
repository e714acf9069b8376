"""The chip map checks the chip ledger against the chip: every simulated chip of a seed has the
same chip id, so a fresh chip finds the ledger of earlier ones and must not show it as its own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from chipctl import catalog
from chipctl.cli import main
from chipctl.ledger import Ledger
from chipctl.runner import run_procedure
from chipctl.station import default_station
from chipctl.tui import data
from chipctl.tui.app import ChipctlApp
from chipctl.tui.screens.chip_map import ChipMapView
from chipctl.tui.screens.core_detail import CoreDetailView
from chipctl.tui.widgets.chip_map import ChipMap
from drivers.board import Board
from drivers.sim.board_model import BoardOptions
from drivers.sim.server import SimServer

from .conftest import make_weights, wait_until


def _text(app: ChipctlApp, selector: str) -> str:
    return str(app.query_one(selector).render())


@pytest.fixture
def server() -> Iterator[SimServer]:
    """A simulated chip of the default station's seed (chip SIM-HERMES-0001) that outlives
    the commands run on it."""
    with SimServer(BoardOptions(seed=1, cores=4)) as sim:
        yield sim


async def test_a_fresh_chip_does_not_show_the_ledger_as_programmed(
    tmp_path: Path, own_ledger: Path
) -> None:
    # Core 0 programmed on another simulated chip of the same seed: the ledger of
    # SIM-HERMES-0001 (this test's store) records it, with that chip's fingerprint.
    weights = np.load(make_weights(tmp_path / "w.npy"))
    program = catalog.build("program", {"weights": weights, "cores": [0], "max_iterations": 4})
    with Board("mockchip://?seed=1") as other_chip:
        summary = run_procedure(program, other_chip, tmp_path / "elsewhere.h5", progress=False)
    assert summary.status == "success", summary.reason
    assert Ledger.of("SIM-HERMES-0001", own_ledger).state()[0]["finished"]

    app = ChipctlApp(data_dir=tmp_path / "runs", poll_interval_s=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.query_one(ChipMapView)
        await pilot.press("f3")
        await wait_until(pilot, lambda: 0 in app.metrics.ledger_cores)
        # Disconnected: the ledger's word, said to be unchecked.
        assert view.shown.value("programmed", 0) == 1.0
        assert "per ledger, not checked on the chip" in _text(app, "#chip-legend")
        assert "programmed, per ledger, not checked on the chip" in _text(app, "#core-line")

        await pilot.press("f2", "c")
        await wait_until(pilot, lambda: app.chip_verdicts is not None)
        assert app.chip_verdicts == {0: data.DOES_NOT_MATCH}
        await pilot.press("f3")
        grid = app.query_one(ChipMap)
        await wait_until(pilot, lambda: grid.metrics.value("programmed", 0) == 0.0)
        legend = _text(app, "#chip-legend")
        assert "1 core(s) where the chip does not match the ledger" in legend

        await pilot.press("enter")  # core 0 is selected: its detail says why
        detail = app.query_one(CoreDetailView)
        await wait_until(pilot, lambda: detail.detail is not None and detail.detail.core == 0)
        await pilot.pause()
        assert "ledger says programmed, chip does not match" in _text(app, "#core-title")


async def test_a_core_really_programmed_matches(
    tmp_path: Path, own_ledger: Path, server: SimServer
) -> None:
    weights = make_weights(tmp_path / "w.npy")
    out = tmp_path / "runs" / "program.h5"
    command = ["program", "--board", server.url, "--weights", str(weights), "--cores", "1"]
    assert main([*command, "--out", str(out), "--max-iterations", "4", "--no-progress"]) == 0

    station = replace(default_station(), board_url=server.url)
    app = ChipctlApp(station, data_dir=tmp_path / "runs", poll_interval_s=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("c")
        await wait_until(pilot, lambda: app.chip_verdicts is not None)
        assert app.chip_verdicts == {1: data.MATCHES}
        view = app.query_one(ChipMapView)
        await pilot.press("f3", "right")  # core 1
        await wait_until(pilot, lambda: view.shown.value("programmed", 1) == 1.0)
        assert "checked on the chip" in _text(app, "#chip-legend")
        await pilot.press("enter")
        detail = app.query_one(CoreDetailView)
        await wait_until(pilot, lambda: detail.detail is not None and detail.detail.core == 1)
        await pilot.pause()
        title = _text(app, "#core-title")
        assert "programmed, per ledger; the chip matches" in title


def test_a_run_that_never_ended_cannot_be_told_and_is_labelled_so(own_ledger: Path) -> None:
    # A 'start' line alone: the run died while writing core 2; no fingerprint was taken.
    entry = {"event": "start", "core": 2, "procedure": "program", "run_file": "p.h5"}
    Ledger.of("SIM-HERMES-0001", own_ledger).append([{**entry, "chip_id": "SIM-HERMES-0001"}])
    with Board("mockchip://?seed=1&cores=4") as board:
        verdicts = data.check_ledger_on_chip(board)
    assert verdicts == {2: data.CANNOT_TELL}
    metrics = data.load_chip_metrics(own_ledger / "no-runs", "SIM-HERMES-0001")
    shown = data.checked_metrics(metrics, verdicts)
    assert shown.value("programmed", 2) == 0.0 and shown.ledger_mismatched == 0
    assert shown.ledger_cores[2] == (
        "partially programmed (run did not end), per ledger; the chip check cannot tell"
    )
    unchecked = data.checked_metrics(metrics, None)
    assert unchecked.ledger_cores[2].endswith("per ledger, not checked on the chip")
    assert not unchecked.ledger_checked
