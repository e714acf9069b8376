"""Bad user input (issue 8): one table, one test. Every row is an input a user can give today and
the error type and message fragment it must produce (never a traceback or a silent accept).

CLI rows go through ``chipctl.cli.main``: a nonzero exit becomes ``CliFailure`` carrying the
exit code and stderr, so they sit in the same table.

Issue 18 (item 4, 8): a second table, ``COMMAND_LINES``, holds command lines as a user types
them (damaged run files given to show/plot/export/resume, recipes that are not text, bad board
URLs, bad core lists, a model that does not fit its data set), each with the exit code and the
fragments its one-line error must contain; ``chipctl.cli.main`` must never print a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from chipctl.calibration import CalibrationError, CalibrationStore, apply_set
from chipctl.cli import main
from chipctl.onnx_import import OnnxImportError, load_onnx
from chipctl.station import DEFAULT_STATION_TOML, StationFileError, load_station, parse_station
from drivers.board import Board
from drivers.errors import LimitError
from procedures.characterize import Characterize
from procedures.program_verify import ProgramVerify

REPO = Path(__file__).resolve().parents[2]
FACTORY_SET = next((REPO / "calibration_data").glob("*/*.npz"))
MODEL = REPO / "chipctl" / "models" / "digits_mlp.onnx"
W = np.zeros((256, 256))


class CliFailure(Exception):
    """``chipctl`` exited nonzero; the message is ``exit N: <stderr>``."""


def _cli(*argv: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    if code != 0:
        raise CliFailure(f"exit {code}: {err.getvalue()}")


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real (aborted) run file and a copy of the factory calibration set."""
    from chipctl.runner import run_procedure
    from procedures.snapshot import ConductanceSnapshot

    root = tmp_path_factory.mktemp("assets")
    run = root / "snap.h5"
    calls = {"n": 0}

    def stop_after_first_core() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    with Board("mockchip://?seed=1&cores=2") as board:
        run_procedure(
            ConductanceSnapshot(cores=[0, 1]), board, run, progress=False,
            should_stop=stop_after_first_core,
        )  # fmt: skip
    cal = root / FACTORY_SET.parent.name / FACTORY_SET.name
    cal.parent.mkdir()
    shutil.copy(FACTORY_SET, cal)
    return {"root": root, "run": run, "cal": cal}


def _variant(assets: dict[str, Path], key: str, name: str, edit: Callable[[bytes], bytes]) -> Path:
    """A copy of an asset, edited, under a fresh directory (same file name)."""
    src = assets[key]
    folder = assets["root"] / name / src.parent.name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / src.name
    path.write_bytes(edit(src.read_bytes()))
    return path


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _scramble(data: bytes) -> bytes:
    out = bytearray(data)
    middle = len(out) // 2
    out[middle : middle + 64] = bytes(64)
    return bytes(out)


def _board(**kw: Any) -> Board:
    return Board("mockchip://?seed=0&cores=1", **kw)


def _with_board(use: Callable[[Board], Any], seed: int = 0) -> Any:
    with Board(f"mockchip://?seed={seed}&cores=1") as board:
        return use(board)


def _pulse(amplitude: Any, width: Any) -> None:
    with _board() as board:
        board.apply_pulses(0, 3, 4, 0, "set", amplitude, width)


def _mvm(core: Any, inputs: Any) -> None:
    with _board() as board:
        board.mvm(core, inputs)


def _onnx_with_op(op: str, tmp: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], name="n")],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp / f"{op}.onnx"
    onnx.save(model, str(path))
    return path


def _station_without(key: str) -> str:
    return re.sub(rf"(?m)^{key} = .*\n", "", DEFAULT_STATION_TOML)


def _station_with(key: str, value: str) -> str:
    return re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", DEFAULT_STATION_TOML, count=1)


def _load_station_text(text: str, assets: dict[str, Path]) -> None:
    path = assets["root"] / "station.toml"
    path.write_text(text)
    load_station(path)


Action = Callable[[dict[str, Path]], Any]

CASES: list[Any] = [
    # -- weights and parameters of procedures ---------------------------------------------
    (
        "program-weights-nan",
        lambda a: ProgramVerify(weights=np.full((256, 256), np.nan)),
        LimitError,
        "parameter weights: array contains NaN or infinite values",
    ),
    (
        "program-weights-inf",
        lambda a: ProgramVerify(weights=np.where(W == 0, np.inf, W)),
        LimitError,
        "parameter weights: array contains NaN or infinite values",
    ),
    (
        "program-weights-oversized",
        lambda a: ProgramVerify(weights=np.zeros((257, 256))),
        LimitError,
        "a 257×256 matrix is tiled into 2 tiles of 129×256 (2×1) and needs 2 cores; 1 given",
    ),
    (
        "program-weights-too-many-cores",
        lambda a: ProgramVerify(weights=np.zeros((2, 256, 256))),
        LimitError,
        "nor (1, 256, 256) for 1 core(s)",
    ),
    (
        "program-weights-1d",
        lambda a: ProgramVerify(weights=np.zeros(256)),
        LimitError,
        "shape (256,) is neither",
    ),
    (
        "program-weights-string-dtype",
        lambda a: ProgramVerify(weights=np.full((256, 256), "a")),
        LimitError,
        "expected a numeric array, got dtype <U1",
    ),
    (
        "program-weights-complex",
        lambda a: ProgramVerify(weights=W.astype(complex)),
        LimitError,
        "expected a numeric array, got dtype complex128",
    ),
    (
        "program-weights-missing",
        lambda a: ProgramVerify(),
        LimitError,
        "parameter weights is required",
    ),
    (
        "characterize-weights-nan",
        lambda a: Characterize(weights=np.full((256, 256), np.nan)),
        LimitError,
        "parameter weights: array contains NaN or infinite values",
    ),
    (
        "characterize-weights-inf",
        lambda a: Characterize(weights=np.full((256, 256), -np.inf)),
        LimitError,
        "parameter weights: array contains NaN or infinite values",
    ),
    (
        "characterize-weights-oversized",
        lambda a: Characterize(weights=np.zeros((256, 300))),
        LimitError,
        "(256, 300)",
    ),
    (
        "characterize-weights-object-dtype",
        lambda a: Characterize(weights=np.empty((256, 256), object)),
        LimitError,
        "expected a numeric array, got dtype object",
    ),
    # -- cores ---------------------------------------------------------------------------------
    (
        "program-cores-64",
        lambda a: ProgramVerify(weights=W, cores=[64]),
        LimitError,
        "parameter cores: 64 is above the maximum 63",
    ),
    (
        "program-cores-negative",
        lambda a: ProgramVerify(weights=W, cores=[-1]),
        LimitError,
        "parameter cores: -1 is below the minimum 0",
    ),
    (
        "characterize-cores-64-text",
        lambda a: Characterize(weights=W, cores="60-64"),
        LimitError,
        "parameter cores: 64 is above the maximum 63",
    ),
    (
        "characterize-cores-negative",
        lambda a: Characterize(weights=W, cores=-3),
        LimitError,
        "parameter cores: -3 is below the minimum 0",
    ),
    (
        "characterize-cores-float",
        lambda a: Characterize(weights=W, cores=[1.5]),
        LimitError,
        "core id 1.5 is not an integer",
    ),
    (
        "board-mvm-core-64",
        lambda a: _mvm(64, np.zeros(256, np.int8)),
        LimitError,
        "this board has 1 cores",
    ),
    (
        "board-mvm-core-negative",
        lambda a: _mvm(-1, np.zeros(256, np.int8)),
        LimitError,
        "this board has 1 cores",
    ),
    (
        "board-read-ldpu-core-64",
        lambda a: _with_board(lambda b: b.read_ldpu(64)),
        LimitError,
        "this board has 1 cores",
    ),
    # -- MVM inputs: shapes and dtypes ------------------------------------------------------
    (
        "board-mvm-float-inputs",
        lambda a: _mvm(0, np.zeros(256)),
        LimitError,
        "MVM inputs must be integers in -127..127, got dtype float64",
    ),
    ("board-mvm-bool-inputs", lambda a: _mvm(0, np.zeros(256, bool)), LimitError, "got dtype bool"),
    (
        "board-mvm-wrong-shape",
        lambda a: _mvm(0, np.zeros((2, 255), np.int8)),
        LimitError,
        "(256,) or (batch, 256)",
    ),
    (
        "board-mvm-input-minus-128",
        lambda a: _mvm(0, np.full(256, -128, np.int16)),
        LimitError,
        "-127..127",
    ),
    # -- pulse amplitudes and widths --------------------------------------------------------
    (
        "pulse-amplitude-above-800",
        lambda a: _pulse(801, 100),
        LimitError,
        "amplitude_ua must be within [1, 800], got [801]",
    ),
    (
        "pulse-amplitude-zero",
        lambda a: _pulse(0, 100),
        LimitError,
        "amplitude_ua must be within [1, 800], got [0]",
    ),
    (
        "pulse-amplitude-fractional",
        lambda a: _pulse(100.5, 100),
        LimitError,
        "amplitude_ua must hold whole numbers",
    ),
    (
        "pulse-amplitude-nan",
        lambda a: _pulse(np.nan, 100),
        LimitError,
        "amplitude_ua contains NaN or infinite values",
    ),
    (
        "pulse-width-above-5000",
        lambda a: _pulse(100, 5001),
        LimitError,
        "width_ns must be within [10, 5000], got [5001]",
    ),
    (
        "pulse-width-below-10",
        lambda a: _pulse(100, 9),
        LimitError,
        "width_ns must be within [10, 5000], got [9]",
    ),
    (
        "pulse-width-negative",
        lambda a: _pulse(100, -50),
        LimitError,
        "width_ns must be within [10, 5000], got [-50]",
    ),
    # -- calibration sets ---------------------------------------------------------------------
    (
        "calibration-truncated",
        lambda a: CalibrationStore.read(_variant(a, "cal", "cal-trunc", _half)),
        CalibrationError,
        "not a readable calibration set (corrupted or truncated?)",
    ),
    (
        "calibration-corrupted",
        lambda a: CalibrationStore.read(_variant(a, "cal", "cal-scrambled", _scramble)),
        CalibrationError,
        "not a readable calibration set (corrupted or truncated?)",
    ),
    (
        "calibration-empty-file",
        lambda a: CalibrationStore.read(_variant(a, "cal", "cal-empty", lambda d: b"")),
        CalibrationError,
        "not a readable calibration set",
    ),
    (
        "calibration-other-chip-read",
        lambda a: CalibrationStore.read(a["cal"], chip_id="SIM-HERMES-0002"),
        CalibrationError,
        "not 'SIM-HERMES-0002'",
    ),
    (
        "calibration-other-chip-apply",
        lambda a: _with_board(lambda b: apply_set(b, CalibrationStore.read(a["cal"])), seed=2),
        CalibrationError,
        "SIM-HERMES-0001",
    ),
    # -- run files given to show / resume ---------------------------------------------------
    (
        "show-truncated-run",
        lambda a: _cli("show", str(_variant(a, "run", "run-trunc", _half))),
        CliFailure,
        "truncated or damaged HDF5 file",
    ),
    (
        "show-non-hdf5",
        lambda a: _cli("show", str(_variant(a, "run", "run-text", lambda d: b"hello\n"))),
        CliFailure,
        "not an HDF5 file",
    ),
    (
        "resume-truncated-run",
        lambda a: _cli("resume", str(_variant(a, "run", "run-trunc2", _half))),
        CliFailure,
        "truncated or damaged HDF5 file",
    ),
    (
        "resume-non-hdf5",
        lambda a: _cli("resume", str(_variant(a, "run", "run-text2", lambda d: b"\x00" * 4096))),
        CliFailure,
        "not an HDF5 file",
    ),
    # -- ONNX ------------------------------------------------------------------------------------
    (
        "onnx-truncated",
        lambda a: load_onnx(_variant({"root": a["root"], "m": MODEL}, "m", "onnx-trunc", _half)),
        OnnxImportError,
        "not a valid ONNX file (truncated or corrupted?)",
    ),
    (
        "onnx-unsupported-operator",
        lambda a: load_onnx(_onnx_with_op("Sin", a["root"])),
        OnnxImportError,
        "(Sin): unsupported operator",
    ),
    # -- station files ---------------------------------------------------------------------------
    (
        "station-missing-limit",
        lambda a: parse_station(_station_without("max_programming_ua")),
        StationFileError,
        "[limits] missing key 'max_programming_ua'",
    ),
    (
        "station-missing-limits-table",
        lambda a: parse_station(DEFAULT_STATION_TOML.replace("[limits]", "[limitz]")),
        StationFileError,
        "missing table [limits]",
    ),
    (
        "station-programming-limit-too-high",
        lambda a: parse_station(_station_with("max_programming_ua", "2000.0")),
        StationFileError,
        "exceeds the SMU pulse range",
    ),
    (
        "station-negative-ramp-rate",
        lambda a: parse_station(_station_with("ramp_rate_v_per_s", "-1.0")),
        StationFileError,
        "[limits.ramp_rate_v_per_s] must be > 0",
    ),
    (
        "station-temperature-window-reversed",
        lambda a: parse_station(_station_with("temperature_window_c", "[60.0, 15.0]")),
        StationFileError,
        "low < high",
    ),
    (
        "station-rail-above-rating",
        lambda a: parse_station(_station_with("max_voltage_v", "9.0")),
        StationFileError,
        "[rails.vdd.max_voltage_v] exceeds output 1's rating",
    ),
    (
        "station-file-missing-limit",
        lambda a: _load_station_text(_station_without("smu_max_current_a"), a),
        StationFileError,
        "station.toml:24: [limits] missing key 'smu_max_current_a'",
    ),
]


@pytest.mark.parametrize(
    ("action", "error", "fragment"),
    [pytest.param(action, error, fragment, id=name) for name, action, error, fragment in CASES],
)
def test_bad_user_input_is_refused_clearly(
    assets: dict[str, Path], action: Action, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as info:
        action(assets)
    assert fragment in str(info.value), str(info.value)
    assert "Traceback" not in str(info.value)
    if error is CliFailure:
        assert str(info.value).startswith("exit 1: chipctl ")


# -- issue 18: command lines as a user types them ------------------------------------------------


def _damaged_run(assets: dict[str, Path], name: str, edit: Callable[[h5py.File], None]) -> Path:
    """A copy of the asset run file named ``<name>.h5`` with ``edit`` applied through h5py."""
    folder = assets["root"] / "damaged"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.h5"
    shutil.copy(assets["run"], path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _del_attr(key: str) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f["entry"].attrs[key]

    return edit


def _set_attr(key: str, value: Any) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        f["entry"].attrs[key] = value

    return edit


def _del(path: str) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[path]

    return edit


def _replace(path: str, data: Any) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[path]
        f.create_dataset(path, data=data)

    return edit


def _garble_checkpoint(f: h5py.File) -> None:
    f["entry/run/checkpoints"][0] = b"{garbage"


def _garble_results(f: h5py.File) -> None:
    f["entry/run/results"][0] = b"[1, 2"


def _truncated_run(assets: dict[str, Path], name: str) -> Path:
    return _variant(assets, "run", name, _half)


def _three_output_model(assets: dict[str, Path]) -> Path:
    """digits_mlp with its last layer cut to its first 3 outputs: a 3-class model."""
    path = assets["root"] / "mlp3.onnx"
    if not path.exists():
        model = onnx.load(str(MODEL))
        for init in model.graph.initializer:
            if init.name in ("fc2.weight", "fc2.bias"):
                array = onnx.numpy_helper.to_array(init)[:3]
                init.CopyFrom(onnx.numpy_helper.from_array(array, init.name))
        model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 3
        onnx.save(model, str(path))
    return path


def _recipe(assets: dict[str, Path], name: str, data: bytes) -> Path:
    path = assets["root"] / name
    path.write_bytes(data)
    return path


RUN_FILE_DAMAGE: list[tuple[str, Callable[[dict[str, Path]], Path], str]] = [
    (
        "procedure-attr-deleted",
        lambda a: _damaged_run(a, "noproc", _del_attr("procedure")),
        "damaged run file: metadata attribute /entry@procedure is missing",
    ),
    (
        "parameters-attr-deleted",
        lambda a: _damaged_run(a, "noparams", _del_attr("parameters")),
        "metadata attribute /entry@parameters is missing",
    ),
    (
        "parameters-garbage-json",
        lambda a: _damaged_run(a, "badjson", _set_attr("parameters", "{cores: [0")),
        "metadata attribute /entry@parameters is not valid JSON",
    ),
    (
        "parameters-not-an-object",
        lambda a: _damaged_run(a, "paramlist", _set_attr("parameters", "[0, 1]")),
        "/entry@parameters is not a JSON object",
    ),
    (
        "seed-attr-not-an-integer",
        lambda a: _damaged_run(a, "badseed", _set_attr("seed", "one")),
        "metadata attribute /entry@seed is not an integer",
    ),
    (
        "plot-axis-stream-removed",
        lambda a: _damaged_run(a, "nocore", _del("entry/streams/core")),
        "stream core (named by /entry/data) is missing",
    ),
    (
        "checkpointed-stream-removed",
        lambda a: _damaged_run(a, "noconductance", _del("entry/streams/conductance")),
        "stream conductance (recorded by the last checkpoint) is missing",
    ),
    (
        "stream-of-text",
        lambda a: _damaged_run(
            a, "textstream", _replace("entry/streams/board_time", np.array([b"x"] * 2))
        ),
        "stream board_time: dtype |S1 is not numeric",
    ),
    (
        "stream-scalar",
        lambda a: _damaged_run(a, "scalarstream", _replace("entry/streams/board_time", 1.0)),
        "stream board_time: a scalar dataset, not rows",
    ),
    (
        "status-of-numbers",
        lambda a: _damaged_run(a, "numstatus", _replace("entry/run/status", np.arange(3))),
        "dataset /entry/run/status holds int64, not text",
    ),
    (
        "status-deleted",
        lambda a: _damaged_run(a, "nostatus", _del("entry/run/status")),
        "dataset /entry/run/status is missing",
    ),
    (
        "checkpoint-garbage",
        lambda a: _damaged_run(a, "badcheckpoint", _garble_checkpoint),
        "checkpoint 0 is not valid JSON",
    ),
    (
        "results-garbage",
        lambda a: _damaged_run(a, "badresults", _garble_results),
        "/entry/run/results is not valid JSON",
    ),
    (
        "default-plot-group-deleted",
        lambda a: _damaged_run(a, "nodata", _del("entry/data")),
        "group /entry/data (the default plot) is missing",
    ),
    ("truncated", lambda a: _truncated_run(a, "run-trunc-cli"), "truncated or damaged HDF5 file"),
]
"""Damaged run files: (name, make the file, what the one-line error says is damaged)."""

RUN_FILE_COMMANDS = ("show {run}", "plot {run}", "export {run} --csv {tmp}/csv", "resume {run}")

UNREACHABLE = "socket://127.0.0.1:9"
OUT = "--out {tmp}/out.h5 --no-progress"

Line = tuple[str, Callable[[dict[str, Path]], dict[str, Path]], str, int, tuple[str, ...]]
"""(name, files the line needs by placeholder, command line, exit code, message fragments)."""


def _none(a: dict[str, Path]) -> dict[str, Path]:
    return {}


COMMAND_LINES: list[Line] = [
    *[
        (
            f"{command.split()[0]}-{name}",
            (lambda a, make=make: {"run": make(a)}),
            command,
            1,
            ("damaged" if name != "truncated" else "truncated", fragment, "{run}"),
        )
        for name, make, fragment in RUN_FILE_DAMAGE
        for command in RUN_FILE_COMMANDS
    ],
    # -- recipes that are not text -------------------------------------------------------------
    (
        "recipe-latin1",
        lambda a: {"recipe": _recipe(a, "latin1.toml", 'board = "caf\xe9"\n'.encode("latin-1"))},
        "run {recipe}",
        2,
        ("{recipe}", "not a UTF-8 text file"),
    ),
    (
        "recipe-binary",
        lambda a: {"recipe": _recipe(a, "binary.toml", bytes(range(256)) * 4)},
        "run {recipe}",
        2,
        ("{recipe}", "not a UTF-8 text file"),
    ),
    (
        "recipe-nul-bytes",
        lambda a: {"recipe": _recipe(a, "nul.toml", b'board = "mockchip://"\x00\x00\n')},
        "run {recipe}",
        2,
        ("{recipe}", "not a UTF-8 text file"),
    ),
    # -- board URLs ------------------------------------------------------------------------------
    (
        "url-port-out-of-range",
        _none,
        "identify --board socket://127.0.0.1:99999",
        2,
        ("BadUrlError", "'socket://127.0.0.1:99999'", "port 99999 is out of range (1-65535)"),
    ),
    (
        "url-port-zero",
        _none,
        "identify --board socket://127.0.0.1:0",
        2,
        ("'socket://127.0.0.1:0'", "port 0 is out of range"),
    ),
    (
        "url-port-missing",
        _none,
        "identify --board socket://host",
        2,
        ("'socket://host'", "has no port (expected socket://HOST:PORT)"),
    ),
    (
        "url-port-not-a-number",
        _none,
        "identify --board socket://host:http",
        2,
        ("'socket://host:http'", "port 'http' is not a number"),
    ),
    (
        "url-host-missing",
        _none,
        "identify --board socket://:5555",
        2,
        ("'socket://:5555'", "has no host"),
    ),
    (
        "url-rfc2217-port-out-of-range",
        _none,
        "identify --board rfc2217://board:70000",
        2,
        ("'rfc2217://board:70000'", "port 70000 is out of range"),
    ),
    (
        "url-unknown-scheme",
        _none,
        "identify --board http://board:80",
        2,
        ("'http://board:80'", "unknown scheme http://", "mockchip://", "socket://"),
    ),
    (
        "url-garbage",
        _none,
        "identify --board '%%%://??'",
        2,
        ("'%%%://??'", "is not a URL scheme"),
    ),
    ("url-empty", _none, "identify --board ''", 2, ("board URL is empty",)),
    (
        "url-bad-option",
        _none,
        "identify --board socket://board:5555?logging=loud",
        2,
        ("'socket://board:5555?logging=loud'", "logging='loud' is not one of"),
    ),
    (
        "url-ipv6-unclosed",
        _none,
        "identify --board 'socket://[::1'",
        2,
        ("BadUrlError", "'socket://[::1'", "is not of the form socket://HOST:PORT"),
    ),
    (
        "url-mockchip-option-not-a-number",
        _none,
        "identify --board 'mockchip://?seed=abc'",
        2,
        ("BadUrlError", "'mockchip://?seed=abc'", "option seed='abc' is not an integer"),
    ),
    (
        "url-mockchip-option-repeated",
        _none,
        "identify --board 'mockchip://?seed=1&seed=2'",
        2,
        ("BadUrlError", "'mockchip://?seed=1&seed=2'", "option 'seed' given 2 times"),
    ),
    (
        "url-mockchip-unknown-option",
        _none,
        "identify --board 'mockchip://?colour=red'",
        2,
        ("BadUrlError", "'mockchip://?colour=red'", "unknown simulator option(s) ['colour']"),
    ),
    (
        "url-procedure-port-out-of-range",
        _none,
        "snapshot --board socket://127.0.0.1:99999 --cores 0 " + OUT,
        2,
        ("chipctl snapshot: BadUrlError", "port 99999 is out of range"),
    ),
    # -- the simulator server's idle timeout ------------------------------------------------------
    (
        "sim-serve-negative-idle-timeout",
        _none,
        "sim serve --port 0 --idle-timeout -5",
        2,
        ("chipctl sim serve: idle timeout must be > 0 s",),
    ),
    (
        "sim-serve-idle-timeout-option-not-a-number",
        _none,
        "sim serve --port 0 --options idle_timeout=soon",
        2,
        ("option idle_timeout='soon' must be seconds > 0",),
    ),
    # -- core lists ------------------------------------------------------------------------------
    (
        "cores-negative",
        _none,
        f"snapshot --board {UNREACHABLE} --cores -1 " + OUT,
        2,
        ("parameter cores: core id -1 is negative",),
    ),
    (
        "cores-word",
        _none,
        f"snapshot --board {UNREACHABLE} --cores abc " + OUT,
        2,
        ("parameter cores: 'abc' is not a core id",),
    ),
    (
        "cores-fraction",
        _none,
        f"snapshot --board {UNREACHABLE} --cores 1.5 " + OUT,
        2,
        ("parameter cores: 1.5 is not a whole number",),
    ),
    (
        "cores-range-backwards",
        _none,
        f"snapshot --board {UNREACHABLE} --cores 3-1 " + OUT,
        2,
        ("parameter cores: core range '3-1' runs backwards",),
    ),
    (
        "cores-range-beyond-the-chip",
        _none,
        f"snapshot --board {UNREACHABLE} --cores 0-99 " + OUT,
        2,
        ("parameter cores: 64 is above the maximum 63",),
    ),
    (
        "cores-range-huge",
        _none,
        f"snapshot --board {UNREACHABLE} --cores 0-99999999999 " + OUT,
        2,
        ("core range '0-99999999999' names 100000000000 cores, too many",),
    ),
    (
        "cores-range-incomplete",
        _none,
        f"snapshot --board {UNREACHABLE} --cores 2- " + OUT,
        2,
        ("core range '2-' is incomplete",),
    ),
    (
        "cores-range-of-three",
        _none,
        f"snapshot --board {UNREACHABLE} --cores 1-2-3 " + OUT,
        2,
        ("'1-2-3' is not a core id or range",),
    ),
    # -- a model that does not fit the data set ---------------------------------------------
    (
        "infer-3-output-model-on-10-classes",
        lambda a: {"model": _three_output_model(a)},
        f"infer --board {UNREACHABLE} --model {{model}} --dataset digits " + OUT,
        2,
        ("chipctl infer:", "{model}", "3 outputs", "data set digits", "10 classes"),
    ),
    (
        "infer-model-input-does-not-fit",
        _none,
        f"infer --board {UNREACHABLE} --model digits_mlp --dataset mnist1d " + OUT,
        2,
        ("model digits_mlp", "(64 values)", "data set mnist1d", "(40 values)"),
    ),
]


@pytest.mark.parametrize(
    ("files", "line", "code", "fragments"),
    [
        pytest.param(files, line, code, frags, id=name)
        for name, files, line, code, frags in COMMAND_LINES
    ],
)
def test_command_line_errors_are_one_line(
    assets: dict[str, Path],
    tmp_path: Path,
    files: Callable[[dict[str, Path]], dict[str, Path]],
    line: str,
    code: int,
    fragments: tuple[str, ...],
) -> None:
    names = {key: str(path) for key, path in files(assets).items()}
    names["tmp"] = str(tmp_path)
    argv = [part.format(**names) for part in shlex.split(line)]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        exit_code = main(argv)
    text = err.getvalue()
    assert "Traceback" not in text, text
    errors = [ln for ln in text.splitlines() if ln.startswith("chipctl ")]
    assert len(errors) == 1, text
    assert exit_code == code, text
    for fragment in fragments:
        assert fragment.format(**names) in errors[0], errors[0]
    assert not (tmp_path / "out.h5").exists(), "the board was reached"


def test_an_internal_error_is_one_line_and_its_traceback_goes_to_a_log_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception that is no error of ours (a bug) names itself and the log file."""
    import chipctl.cli.board

    def broken(args: Any) -> int:
        return json.loads("{")["x"]

    monkeypatch.setattr(chipctl.cli.board, "_cmd_identify", broken)
    monkeypatch.setenv("CHIPCTL_LOG_DIR", str(tmp_path / "logs"))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["identify", "--board", "mockchip://?cores=1"])
    text = err.getvalue()
    assert code == 1 and "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    assert "internal error" in text and "JSONDecodeError" in text
    logs = list((tmp_path / "logs").glob("chipctl-error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in text
    assert "Traceback" in logs[0].read_text() and "broken" in logs[0].read_text()


def _raised(make: Callable[[], Any]) -> Exception:
    try:
        make()
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError("nothing raised")


def _missing_file() -> None:
    Path("/nonexistent/weights.npy").read_bytes()


@pytest.mark.parametrize(
    ("make", "code", "fragment"),
    [
        pytest.param(lambda: _pulse(801, 100), 2, "LimitError: amplitude_ua", id="limit-error"),
        pytest.param(
            lambda: __import__("procedures.base").base.parse_duration("soon"),
            2,
            "ValueError: 'soon' is not a duration",
            id="builtin-valueerror-of-ours",
        ),
        pytest.param(_missing_file, 1, "FileNotFoundError", id="file-refused-by-the-system"),
    ],
)
def test_errors_of_our_packages_are_one_line(
    make: Callable[[], Any],
    code: int,
    fragment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chipctl.cli import report_error

    monkeypatch.setenv("CHIPCTL_LOG_DIR", str(tmp_path))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert report_error("chipctl x", _raised(make)) == code
    assert err.getvalue().startswith(f"chipctl x: {fragment}"), err.getvalue()
    assert len(err.getvalue().splitlines()) == 1 and not list(tmp_path.iterdir())
