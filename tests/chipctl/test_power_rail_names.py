"""Power runs record which rail each supply output is, and the plots name the rails with it."""

from __future__ import annotations

from pathlib import Path

import h5py

from chipctl import catalog
from chipctl.analysis import read_run as read_run_data
from chipctl.plot import figure_for
from chipctl.runner import run_procedure
from chipctl.station import default_station
from chipctl.tui.data import read_run
from chipctl.tui.screens.procedures import LiveSignal
from procedures.base import Data, Record, Start


def test_power_up_plots_name_the_rails_and_old_files_say_rail_n(tmp_path: Path) -> None:
    path = tmp_path / "power_up.h5"
    with default_station(board_url="mockchip://?seed=1&cores=1", time_scale=0.0).open() as opened:
        opened.sleep = lambda seconds: None
        names = [rail.name for rail in opened.rails]
        procedure = catalog.build("power_up", {}, station=opened)
        records: list[Record] = []
        summary = run_procedure(
            procedure, opened.board, path, progress=False, subscribers=[records.append]
        )
    assert summary.status == "success", summary.reason
    assert len(set(names)) == 3

    # The live plot names the rails from the Start record, the finished file from its results.
    start = next(r for r in records if isinstance(r, Start))
    live = LiveSignal.from_start(start)
    for record in records:
        if isinstance(record, Data):
            live.add(record)
    assert [label for label, _, _ in live.curves()] == names

    preview = read_run(path)
    assert preview.plot is not None
    assert preview.plot.labels == tuple(f"voltage {name}" for name in names)
    axes = figure_for(read_run_data(path)).axes[0]
    assert [line.get_label() for line in axes.get_lines()] == names

    # A run file from before the names were recorded: the curves are still one per rail.
    with h5py.File(path, "r+") as f:
        f["entry/run/results"][0] = b'{"sequence": []}'
    old = read_run(path).plot
    assert old is not None
    assert old.labels == ("voltage rail 1", "voltage rail 2", "voltage rail 3")
    axes = figure_for(read_run_data(path)).axes[0]
    assert [line.get_label() for line in axes.get_lines()] == ["rail 1", "rail 2", "rail 3"]
