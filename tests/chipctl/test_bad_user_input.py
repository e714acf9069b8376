"""Bad user input (issue 8): one table, one test. Every row is an input a user can give today and
the error type and message fragment it must produce (never a traceback or a silent accept).

CLI rows go through ``chipctl.cli.main``: a nonzero exit becomes ``CliFailure`` carrying the
exit code and stderr, so they sit in the same table.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
        "shape (257, 256) is neither (256, 256)",
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
