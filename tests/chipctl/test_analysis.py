"""The analysis path: run files into numpy with units, into xarray, CSV/NetCDF export, the
default plot, and the ``export``/``plot`` subcommands, including their errors on bad files."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from chipctl.analysis import MissingDependencyError, Quantity, read_run, read_stream, to_xarray
from chipctl.cli.analysis import add_analysis_commands
from chipctl.export import export_csv, export_netcdf
from chipctl.plot import default_plot_streams, figure_for, plot_run
from chipctl.runfile import RunFile, RunFileError, RunWriter
from chipctl.runner import run_procedure
from drivers.board import Board
from procedures.base import Data, Start, StreamSpec
from procedures.snapshot import ConductanceSnapshot

xarray = pytest.importorskip("xarray")

TIMES = np.array([25.0, 250.0, 2500.0, 25000.0])
CURVE = np.array([[1.0, 2.0], [1.5, 2.5], [2.0, 3.0], [2.5, 3.5]])
IMAGE = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
WEIGHTS = np.arange(6.0).reshape(2, 3)


def _start(default_plot: tuple[str, str | None] = ("curve", "time")) -> Start:
    return Start(
        procedure="testproc",
        parameters={"gain_us": 2.5, "cores": [0, 1], "weights": WEIGHTS},
        streams=(
            StreamSpec("time", (), "f8", "s", "time since programming"),
            StreamSpec("curve", (2,), "f8", "uS", "mean conductance per core"),
            StreamSpec("image", (2, 3, 4), "f4", "counts", "a small map"),
            StreamSpec("pulses", (), "i8", "1", "pulses so far"),
        ),
        default_plot=default_plot,
        metadata={"board_url": "mockchip://?seed=7&cores=2", "chip_id": "C1"},
        total=4,
    )


def _write(path: Path, default_plot: tuple[str, str | None] = ("curve", "time")) -> Path:
    writer = RunWriter(path)
    writer(_start(default_plot))
    for k, t in enumerate(TIMES):
        writer(Data("time", t))
        writer(Data("curve", CURVE[k]))
        writer(Data("pulses", np.int64(3_000_000_000 + k)))  # beyond int32: NetCDF 3 note
    writer(Data("image", IMAGE))
    writer.finish("success", results={"nu": 0.05})
    return path


@pytest.fixture
def run_path(tmp_path: Path) -> Path:
    return _write(tmp_path / "run.h5")


def test_read_run_gives_numpy_arrays_with_units(run_path: Path) -> None:
    run = read_run(run_path)
    assert run.procedure == "testproc" and run.status == "success"
    assert run.results == {"nu": 0.05}
    assert run.metadata["chip_id"] == "C1" and run.metadata["seed"] == 7
    np.testing.assert_array_equal(run.parameters["weights"], WEIGHTS)
    assert list(run) == ["time", "curve", "image", "pulses"]
    assert run.units() == {"time": "s", "curve": "uS", "image": "counts", "pulses": "1"}
    curve = run["curve"]
    assert isinstance(curve, Quantity) and curve.units == "uS"
    assert curve.label == "mean conductance per core [uS]"
    np.testing.assert_array_equal(np.asarray(curve), CURVE)
    assert curve.shape == (4, 2) and len(curve) == 4
    assert np.mean(curve) == pytest.approx(CURVE.mean())  # numpy takes a Quantity
    with RunFile.open(run_path) as reader:  # the same data as the reader API
        np.testing.assert_array_equal(run["image"].values, reader.stream("image"))
    assert run.default_plot == ("curve", "time")
    one = read_stream(run_path, "time")
    assert one.units == "s" and one.values.tolist() == TIMES.tolist()
    with pytest.raises(RunFileError, match=r"no stream\(s\) \['nosuch'\]"):
        read_run(run_path, streams=["nosuch"])
    with pytest.raises(KeyError, match="no stream 'nosuch'"):
        run["nosuch"]


def test_a_run_still_being_written_is_readable(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path / "live.h5")
    writer(_start())
    writer(Data("time", 1.0))
    writer.flush()
    try:
        run = read_run(tmp_path / "live.h5")
        assert run.status == "running" and run["time"].values.tolist() == [1.0]
    finally:
        writer.finish("aborted", "test over")


def test_to_xarray_keeps_units_and_the_default_axis(run_path: Path) -> None:
    ds = to_xarray(run_path)
    assert isinstance(ds, xarray.Dataset)
    assert ds["curve"].dims == ("time", "curve_dim1")
    assert ds["curve"].attrs == {"units": "uS", "long_name": "mean conductance per core"}
    assert "time" in ds.coords and ds["time"].attrs["units"] == "s"
    np.testing.assert_array_equal(ds["time"].values, TIMES)
    assert ds["pulses"].dims == ("time",)  # same number of rows as the axis
    assert ds["image"].dims == ("image_row", "image_dim1", "image_dim2", "image_dim3")
    assert ds["image"].attrs["units"] == "counts"
    np.testing.assert_array_equal(ds["parameter_weights"].values, WEIGHTS)
    assert json.loads(ds.attrs["parameters"]) == {"cores": [0, 1], "gain_us": 2.5}
    assert json.loads(ds.attrs["results"]) == {"nu": 0.05}
    assert ds.attrs["procedure"] == "testproc" and ds.attrs["status"] == "success"
    assert ds.attrs["default_signal"] == "curve" and ds.attrs["default_axis"] == "time"


def test_to_xarray_without_xarray_is_a_clear_error(
    run_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "xarray", None)
    with pytest.raises(MissingDependencyError, match=r"xarray is not installed.*read_run"):
        to_xarray(run_path)
    assert read_run(run_path)["time"].units == "s"  # the numpy path still works


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_csv_export_one_file_per_stream_with_units(run_path: Path, tmp_path: Path) -> None:
    written = export_csv(run_path, tmp_path / "csv")
    assert [p.name for p in written] == [
        "time.csv",
        "curve.csv",
        "image.csv",
        "pulses.csv",
        "run.json",
    ]
    time_rows = _rows(tmp_path / "csv" / "time.csv")
    assert time_rows[0] == ["row", "time [s]"]
    assert [float(r[1]) for r in time_rows[1:]] == TIMES.tolist()
    curve_rows = _rows(tmp_path / "csv" / "curve.csv")
    assert curve_rows[0] == ["row", "curve[0] [uS]", "curve[1] [uS]"]
    np.testing.assert_array_equal(np.array(curve_rows[1:], dtype=float)[:, 1:], CURVE)
    image_rows = _rows(tmp_path / "csv" / "image.csv")  # long format: one line per element
    assert image_rows[0] == ["row", "i1", "i2", "i3", "image [counts]"]
    body = np.array(image_rows[1:], dtype=float)
    assert len(body) == IMAGE.size
    index = body[:, 1:4].astype(int)
    np.testing.assert_array_equal(body[:, 4], IMAGE[index[:, 0], index[:, 1], index[:, 2]])
    assert _rows(tmp_path / "csv" / "pulses.csv")[1] == ["0", "3000000000"]
    meta = json.loads((tmp_path / "csv" / "run.json").read_text())
    assert meta["units"]["curve"] == "uS" and meta["parameters"]["weights"] == WEIGHTS.tolist()
    assert meta["results"] == {"nu": 0.05} and meta["metadata"]["chip_id"] == "C1"


def test_netcdf_export_round_trips_with_units(run_path: Path, tmp_path: Path) -> None:
    out = export_netcdf(run_path, tmp_path / "nc" / "run.nc")
    with xarray.open_dataset(out, engine="scipy") as ds:
        np.testing.assert_array_equal(ds["curve"].values, CURVE)
        assert ds["curve"].attrs["units"] == "uS"
        assert ds["image"].attrs["units"] == "counts"
        np.testing.assert_array_equal(ds["time"].values, TIMES)
        assert "int32" in ds["pulses"].attrs["note"]  # int64 beyond int32: float64 in NetCDF 3
        np.testing.assert_array_equal(ds["pulses"].values, 3e9 + np.arange(4))
        assert ds.attrs["chip_id"] == "C1"


def test_default_plot_has_units_on_its_axes(run_path: Path, tmp_path: Path) -> None:
    run = read_run(run_path)
    assert default_plot_streams(run) == ("curve", "time")
    figure = figure_for(run)
    ax = figure.axes[0]
    assert ax.get_xlabel() == "time since programming [s]"
    assert ax.get_ylabel() == "mean conductance per core [uS]"
    assert ax.get_xscale() == "log"  # seconds over three decades
    assert len(ax.get_lines()) == 2  # one line per core
    png = plot_run(run_path)
    assert png == run_path.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_an_image_signal_and_the_fallbacks(tmp_path: Path) -> None:
    image = read_run(_write(tmp_path / "image.h5", default_plot=("image", None)))
    figure = figure_for(image)
    assert figure.axes[1].get_ylabel() == "a small map [counts]"  # the colour bar
    nothing = read_run(_write(tmp_path / "none.h5", default_plot=("", None)))
    assert default_plot_streams(nothing) == ("time", None)  # the first scalar stream
    assert figure_for(nothing).axes[0].get_xlabel() == "row"


@pytest.fixture
def cli() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chipctl")
    commands = parser.add_subparsers(dest="command", required=True)
    assert add_analysis_commands(commands) == {"export", "plot"}
    return parser


def _call(parser: argparse.ArgumentParser, *argv: str) -> int:
    args = parser.parse_args(list(argv))
    return int(args.handler(args))


def test_cli_export_and_plot(
    cli: argparse.ArgumentParser,
    run_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _call(cli, "export", str(run_path), "--csv", str(tmp_path / "c")) == 0
    assert "4 stream(s)" in capsys.readouterr().out
    assert (tmp_path / "c" / "curve.csv").exists()
    assert _call(cli, "export", str(run_path), "--netcdf", str(tmp_path / "r.nc")) == 0
    assert (tmp_path / "r.nc").read_bytes()[:3] == b"CDF"
    assert _call(cli, "plot", str(run_path), "--out", str(tmp_path / "p" / "x.png")) == 0
    assert (tmp_path / "p" / "x.png").exists()
    with pytest.raises(SystemExit):  # --csv or --netcdf is required
        cli.parse_args(["export", str(run_path)])
    capsys.readouterr()


def test_cli_netcdf_without_xarray(
    cli: argparse.ArgumentParser,
    run_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "xarray", None)
    assert _call(cli, "export", str(run_path), "--netcdf", str(tmp_path / "r.nc")) == 1
    assert "xarray is not installed" in capsys.readouterr().err
    assert not (tmp_path / "r.nc").exists()


def _bad_files(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    text = tmp_path / "notes.h5"
    text.write_text("not a run\n")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)

    def damaged(name: str, edit: Callable[[h5py.File], None]) -> Path:
        path = tmp_path / f"{name}.h5"
        path.write_bytes(good.read_bytes())
        with h5py.File(path, "r+") as f:
            edit(f)
        return path

    def text_stream(f: h5py.File) -> None:
        del f["entry/streams/pulses"]
        f["entry/streams/pulses"] = np.array([b"many"] * 4)

    return {
        "missing": (tmp_path / "gone.h5", "no such run file"),
        "not hdf5": (text, "not an HDF5 file"),
        "truncated": (truncated, "truncated or damaged"),
        "foreign": (foreign, "not a chipctl run"),
        "array parameter deleted": (
            damaged("noweights", lambda f: f["entry/parameters"].__delitem__("weights")),
            r"array of parameter weights \(/entry/parameters/weights\) is missing",
        ),
        "stream of text": (
            damaged("textstream", text_stream),
            "stream pulses: dtype .S4 is not numeric",
        ),
        "signal stream deleted": (
            damaged("nocurve", lambda f: f["entry/streams"].__delitem__("curve")),
            r"stream curve \(named by /entry/data\) is missing",
        ),
        "start time deleted": (
            damaged("nostart", lambda f: f["entry"].attrs.__delitem__("start_time")),
            "metadata attribute /entry@start_time is missing",
        ),
    }


@pytest.mark.parametrize("command", ["csv", "netcdf", "plot"])
def test_bad_files_are_clear_errors(
    cli: argparse.ArgumentParser, run_path: Path, tmp_path: Path, command: str
) -> None:
    for path, message in _bad_files(tmp_path, run_path).values():
        argv = (
            ["plot", str(path)]
            if command == "plot"
            else ["export", str(path), f"--{command}", str(tmp_path / "out")]
        )
        with pytest.raises(RunFileError, match=message) as caught:
            _call(cli, *argv)
        assert str(path) in str(caught.value)


def test_a_real_run_exports_and_plots(tmp_path: Path) -> None:
    with Board("mockchip://?seed=3&cores=2") as board:
        summary = run_procedure(
            ConductanceSnapshot(cores=[0, 1]), board, tmp_path / "snap.h5", progress=False
        )
    assert summary.status == "success", summary.reason
    ds = to_xarray(summary.path)
    assert ds["conductance"].attrs["units"] == "counts"
    assert ds["conductance"].dims[0] == "core" and ds.sizes["core"] == 2
    figure = figure_for(read_run(summary.path))
    assert figure.axes[0].get_xlabel() == "core id of the row [1]"
    assert figure.axes[0].get_ylabel() == "mean read over the core [counts]"
    export_netcdf(summary.path, tmp_path / "snap.nc")
    with xarray.open_dataset(tmp_path / "snap.nc", engine="scipy") as back:
        np.testing.assert_array_equal(
            back["conductance"].values, read_stream(summary.path, "conductance").values
        )


# -- export and plot never destroy what is there ----------------------------------------------


def _user_folder(tmp_path: Path) -> Path:
    """The user's files: two run files, a text file, a link to a run file, a CSV folder."""
    _write(tmp_path / "run.h5")
    _write(tmp_path / "other.h5")
    (tmp_path / "notes.txt").write_text("measurement notes\n", encoding="utf-8")
    (tmp_path / "link.h5").symlink_to("run.h5")
    (tmp_path / "csvdir").mkdir()
    (tmp_path / "csvdir" / "time.csv").write_text("the user's own time.csv\n", encoding="utf-8")
    (tmp_path / "csvdir" / "run.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "run.png").write_bytes(b"an earlier plot")
    (tmp_path / "odd" / "image.csv").mkdir(parents=True)
    (tmp_path / "odd" / "curve.csv").write_text("the user's curve\n", encoding="utf-8")
    damaged = (tmp_path / "run.h5").read_bytes()
    (tmp_path / "damaged.h5").write_bytes(damaged[: len(damaged) // 2])
    return tmp_path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


REFUSED: list[tuple[str, str, tuple[str, ...]]] = [
    ("export run.h5 --netcdf run.h5", "run.h5", ("is the run file being read",)),
    ("export run.h5 --netcdf run.h5 --overwrite", "run.h5", ("is the run file being read",)),
    ("export run.h5 --netcdf link.h5 --overwrite", "link.h5", ("is the run file being read",)),
    ("export run.h5 --netcdf other.h5", "other.h5", ("a run file is never replaced",)),
    ("export run.h5 --netcdf other.h5 --overwrite", "other.h5", ("a run file is never replaced",)),
    ("export run.h5 --netcdf notes.txt", "notes.txt", ("exists", "--overwrite")),
    (
        "export run.h5 --netcdf damaged.h5 --overwrite",
        "damaged.h5",
        ("is an HDF5 file (perhaps a damaged run file)",),
    ),
    (
        "plot run.h5 --out damaged.h5 --overwrite",
        "damaged.h5",
        ("is an HDF5 file (perhaps a damaged run file)",),
    ),
    ("export run.h5 --netcdf csvdir --overwrite", "csvdir", ("is not a regular file",)),
    ("plot run.h5 --out run.h5", "run.h5", ("is the run file being read",)),
    ("plot run.h5 --out run.h5 --overwrite", "run.h5", ("is the run file being read",)),
    ("plot run.h5 --out other.h5 --overwrite", "other.h5", ("a run file is never replaced",)),
    ("plot run.h5 --out notes.txt", "notes.txt", ("exists", "--overwrite")),
    ("plot run.h5", "run.png", ("exists", "--overwrite")),
    ("export run.h5 --csv csvdir", "csvdir", ("time.csv", "run.json", "--overwrite")),
    (
        "export run.h5 --csv odd --overwrite",
        "odd/image.csv",
        ("is not a regular file (a directory)",),
    ),
]


@pytest.mark.parametrize(("line", "named", "fragments"), REFUSED, ids=[r[0] for r in REFUSED])
def test_export_and_plot_refuse_to_replace_files(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    line: str,
    named: str,
    fragments: tuple[str, ...],
) -> None:
    from chipctl.cli import main

    folder = _user_folder(tmp_path)
    before = _snapshot(folder)
    monkeypatch.chdir(folder)
    code = main(line.split())
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("chipctl ")]
    assert code == 2, err
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith(f"chipctl {line.split()[0]}: {named} "), errors[0]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert _snapshot(folder) == before, "a file the user had was changed, added or removed"


def test_export_and_plot_replace_an_ordinary_file_with_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chipctl.cli import main

    folder = _user_folder(tmp_path)
    monkeypatch.chdir(folder)
    assert main(["export", "run.h5", "--netcdf", "notes.txt", "--overwrite"]) == 0
    assert (folder / "notes.txt").read_bytes()[:3] == b"CDF"
    assert main(["plot", "run.h5", "--overwrite"]) == 0
    assert (folder / "run.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["export", "run.h5", "--csv", "csvdir", "--overwrite"]) == 0
    assert (folder / "csvdir" / "time.csv").read_text().startswith("row,time [s]")
    assert main(["export", "run.h5", "--csv", "fresh"]) == 0
    capsys.readouterr()
    assert not list(folder.rglob(".*.tmp")), "a temporary file was left behind"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    folder = _user_folder(tmp_path)
    before = _snapshot(folder)

    def broken(self: object, target: object, **kwargs: object) -> None:
        Path(str(target)).write_bytes(b"half a PNG")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RunFileError, match="disk full"):
        plot_run(folder / "run.h5", overwrite=True)
    assert _snapshot(folder) == before
