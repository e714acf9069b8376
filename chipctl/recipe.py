"""Recipes: TOML files that chain procedures on one board, one run file per step.

::

    board = "mockchip://?seed=1&cores=4"
    out_dir = "runs"                 # optional, relative to the recipe file (default "runs")
    overwrite = false                # optional: steps may replace existing run files

    [[step]]
    procedure = "snapshot"
    cores = "0-3"

    [[step]]
    procedure = "program"
    weights = "weights.npy"          # "array" parameters: a .npy file, relative to the recipe

    [[step]]
    procedure = "infer"
    model = "net.onnx"               # text naming a file (FILE_SUFFIXES, or with a "/"):
    dataset = "data/test.npz"        # relative to the recipe too, whatever the current folder
    overwrite_cores = true           # optional: may reprogram cores the chip ledger says
                                     # hold weights (default false: refused)

With a ``station`` key the recipe runs on a whole bench station (chipctl/station/):
``station = "simulated"`` is the simulated station around ``board``, any other value the path
of a station file (relative to the recipe; its board replaces ``board``, which may then be left
out). Such recipes may use the steps ``power_up`` and ``power_down`` (they need the station's
supply; procedures/power.py), and programming is guarded by the station's interlock.

The whole recipe is validated before anything runs (:func:`load_recipe`); :func:`run_recipe`
runs the steps in order and stops at the first one that does not succeed.

The chip-ledger guard (:mod:`chipctl.ledger`): before the first step, :func:`run_recipe` checks
every step that would overwrite cores without ``overwrite_cores = true``: a core the ledger says
holds weights the chip still shows, or that an earlier step of the recipe programs, refuses the
whole recipe (:class:`RecipeError`) before any step touches the board.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chipctl import catalog
from chipctl.errors import ChipctlError
from chipctl.runfile import check_out, run_stamp
from chipctl.runfile.paths import path_key
from chipctl.runner import RunSummary, run_procedure
from chipctl.station import Station, StationFileError, default_station, load_station
from drivers.board import Board
from drivers.errors import LimitError
from procedures.base import Procedure

log = logging.getLogger(__name__)

FILE_SUFFIXES = (".onnx", ".npz", ".npy", ".h5")
"""A text parameter whose value ends so (or holds a "/") names a file: relative to the recipe."""
TOP_LEVEL_KEYS = {"board", "out_dir", "overwrite", "station", "step"}
STEP_KEYS = {"procedure", "out", "calibration_dir", "overwrite_cores"}
"""Keys of a step that are not procedure parameters (``out``: the run file name;
``calibration_dir``: the calibration store of a step whose entry offers it;
``overwrite_cores``: the step may overwrite cores the chip ledger says hold something)."""


class RecipeError(ChipctlError, ValueError):
    """A recipe that cannot run; the message names the file, the step and the key."""


@dataclass(frozen=True)
class Step:
    """One validated step: procedure class, its validated parameters and its run file."""

    number: int
    procedure: type[Procedure]
    parameters: dict[str, Any]
    out: Path
    calibration_dir: Path | None = None
    overwrite_cores: bool = False

    @property
    def entry(self) -> catalog.Entry:
        """The step's catalog entry."""
        return catalog.entry(self.procedure.name)

    @property
    def label(self) -> str:
        """``step N (procedure)``, as messages name the step."""
        return f"step {self.number} ({self.procedure.name})"


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: its board URL, station (None, or a loaded station), run-file
    folder and steps."""

    path: Path
    board: str
    out_dir: Path
    steps: tuple[Step, ...]
    station: Station | None = None
    overwrite: bool = False


def load_recipe(path: str | Path, *, stamp: str | None = None, overwrite: bool = False) -> Recipe:
    """Parse and validate the whole recipe; :class:`RecipeError` at the first problem.

    A step whose run file exists is refused here, before any step runs
    (:class:`~chipctl.runfile.RunFileExistsError`), unless ``overwrite`` or the recipe's
    ``overwrite = true`` allow replacing it (never a file a live writer holds, nor anything but
    a regular file). ``stamp`` (default :func:`~chipctl.runfile.run_stamp`) is the time part of
    the default step file names ``NN-<procedure>-<stamp>.h5``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc}") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(
            f"{path}: not a UTF-8 text file (byte {exc.start}: {exc.reason}); "
            "a recipe is a TOML text file"
        ) from None
    if "\x00" in text:
        raise RecipeError(
            f"{path}: not a UTF-8 text file (it holds NUL bytes); a recipe is a TOML text file"
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: TOML syntax error: {exc}") from None
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise RecipeError(f"{path}: unknown key(s) {unknown}; expected {sorted(TOP_LEVEL_KEYS)}")
    board = data.get("board")
    station = _station(path, data.get("station"), board)
    if station is not None:
        board = station.board_url
    if not isinstance(board, str) or not board:
        raise RecipeError(f"{path}: key 'board' must be a board URL string")
    out_dir_value = data.get("out_dir", "runs")
    if not isinstance(out_dir_value, str):
        raise RecipeError(f"{path}: key 'out_dir' must be a string")
    out_dir = path.parent / out_dir_value
    raw_steps = data.get("step")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise RecipeError(f"{path}: no [[step]] tables")
    overwrite_value = data.get("overwrite", False)
    if not isinstance(overwrite_value, bool):
        raise RecipeError(f"{path}: key 'overwrite' must be true or false")
    overwrite = overwrite or overwrite_value
    stamp = stamp or run_stamp()
    steps = tuple(
        _step(path, number, raw, out_dir, stamp) for number, raw in enumerate(raw_steps, 1)
    )
    # The same file under two spellings ("a.h5", "../runs/a.h5", a symlink) is the same file.
    seen: dict[str, Step] = {}
    for step in steps:
        key = path_key(step.out)
        if key in seen:
            raise RecipeError(
                f"{path}: {seen[key].label} and {step.label} write the same run file {step.out}"
            )
        seen[key] = step
    needs_station = [s.label for s in steps if s.entry.needs_station]
    if needs_station and station is None:
        raise RecipeError(f"{path}: {', '.join(needs_station)} need(s) a 'station' key")
    for step in steps:
        check_out(step.out, overwrite=overwrite)
    return Recipe(
        path=path,
        board=board,
        out_dir=out_dir,
        steps=steps,
        station=station,
        overwrite=overwrite,
    )


def _station(path: Path, value: Any, board: Any) -> Station | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise RecipeError(f"{path}: key 'station' must be \"simulated\" or a station file path")
    if value == "simulated":
        if not isinstance(board, str) or not board:
            raise RecipeError(f"{path}: station = \"simulated\" needs the 'board' key")
        return default_station(board_url=board, time_scale=0.0)
    try:
        return load_station(path.parent / value)
    except (StationFileError, LimitError, OSError) as exc:
        raise RecipeError(f"{path}: key 'station': {exc}") from None


def _names_a_file(value: Any) -> bool:
    """Whether a text parameter's value is a file path (by its suffix or a folder in it)."""
    if not isinstance(value, str) or not value or "://" in value:
        return False
    return value.endswith(FILE_SUFFIXES) or "/" in value or "\\" in value


def _step(path: Path, number: int, raw: Any, out_dir: Path, stamp: str) -> Step:
    where = f"{path}: step {number}"
    if not isinstance(raw, Mapping):
        raise RecipeError(f"{where}: must be a table")
    name = raw.get("procedure")
    if not isinstance(name, str):
        raise RecipeError(f"{where}: key 'procedure' (a procedure name) is missing")
    try:
        cls = catalog.procedure_class(name)
    except catalog.CatalogError as exc:
        raise RecipeError(f"{where}: key 'procedure': {exc}") from None
    where = f"{path}: step {number} ({name})"
    declared = {p.name: p for p in cls.parameters}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in STEP_KEYS:
            continue
        parameter = declared.get(key)
        if parameter is None:
            raise RecipeError(f"{where}: unknown parameter {key!r}; known: {sorted(declared)}")
        if parameter.kind == "array":
            if not isinstance(value, str):
                raise RecipeError(f"{where}: key {key!r}: give the path of a .npy file")
            try:
                value = catalog.load_npy(path.parent / value)
            except ValueError as exc:
                raise RecipeError(f"{where}: key {key!r}: {exc}") from None
        elif parameter.kind is str and _names_a_file(value):
            file = path.parent / Path(value).expanduser()
            if not file.is_file():
                raise RecipeError(
                    f"{where}: key {key!r}: no such file {file} (relative paths are from the "
                    "recipe's folder)"
                )
            value = str(file.resolve())
        values[key] = value
    try:
        parameters = catalog.convert(cls, values, base_dir=path.parent)
    except LimitError as exc:
        raise RecipeError(f"{where}: {exc}") from None
    calibration_dir = raw.get("calibration_dir")
    if calibration_dir is not None:
        if "calibration_dir" not in catalog.entry(name).options:
            raise RecipeError(f"{where}: key 'calibration_dir': {name} stores no calibration set")
        if not isinstance(calibration_dir, str) or not calibration_dir:
            raise RecipeError(f"{where}: key 'calibration_dir' must be a folder name")
    overwrite_cores = raw.get("overwrite_cores", False)
    if not isinstance(overwrite_cores, bool):
        raise RecipeError(f"{where}: key 'overwrite_cores' must be true or false")
    if overwrite_cores and not catalog.entry(name).may_overwrite:
        raise RecipeError(f"{where}: key 'overwrite_cores': {name} overwrites no cores")
    out_name = raw.get("out", f"{number:02d}-{name}-{stamp}.h5")
    if not isinstance(out_name, str) or not out_name:
        raise RecipeError(f"{where}: key 'out' must be a file name")
    return Step(
        number=number,
        procedure=cls,
        parameters=parameters,
        out=out_dir / out_name,
        calibration_dir=path.parent / calibration_dir if calibration_dir else None,
        overwrite_cores=overwrite_cores,
    )


def run_recipe(
    recipe: Recipe,
    *,
    progress: bool = True,
    timeout_s: float = 5.0,
    flush_interval_s: float = 1.0,
    on_step: Callable[[Step, RunSummary], None] | None = None,
) -> list[RunSummary]:
    """Run the steps in order on one board; stops after the first step that does not succeed."""
    summaries: list[RunSummary] = []
    with ExitStack() as stack:
        opened = None
        if recipe.station is not None:
            opened = stack.enter_context(recipe.station.open(board_timeout_s=timeout_s))
            board = opened.board
            if recipe.station.simulated and not board.identity.simulated:
                # Simulated rails must never vouch for a real chip's programming interlock.
                raise RecipeError(
                    f"{recipe.path}: a simulated station around a real board "
                    f"({board.identity.chip_id} at {recipe.board}); give a station file"
                )
        else:
            board = stack.enter_context(Board(recipe.board, timeout_s=timeout_s))
        procedures = [
            catalog.build(step.procedure.name, step.parameters, station=opened)
            for step in recipe.steps
        ]
        for step, procedure in zip(recipe.steps, procedures, strict=True):
            try:
                procedure.check_board(board)  # every step fits the board, before the first runs
            except LimitError as exc:
                raise RecipeError(f"{recipe.path}: {step.label}: {exc}") from None
        check_cores(recipe, board)
        for step, procedure in zip(recipe.steps, procedures, strict=True):
            summary = run_procedure(
                procedure,
                board,
                step.out,
                progress=progress,
                flush_interval_s=flush_interval_s,
                context=catalog.RunContext(
                    calibration_dir=step.calibration_dir, overwrite_cores=step.overwrite_cores
                ),
                overwrite=recipe.overwrite,
            )
            summaries.append(summary)
            if on_step is not None:
                on_step(step, summary)
            if summary.status != "success":
                log.warning(
                    "%s %s: %s; stopping the recipe", step.label, summary.status, summary.reason
                )
                break
    return summaries


def check_cores(recipe: Recipe, board: Board) -> None:
    """The chip-ledger guard for the whole recipe, before its first step: :class:`RecipeError`
    naming the first step that would overwrite cores (without ``overwrite_cores = true``) that
    hold what the ledger recorded and the chip still shows, or that an earlier step writes.
    Only reads the board."""
    from chipctl.ledger import core_ranges, describe_holdings, held_cores

    written: dict[int, str] = {}
    for step in recipe.steps:
        cores = step.entry.overwrites(step.parameters)
        if cores and not step.overwrite_cores:
            earlier = sorted(c for c in cores if c in written)
            if earlier:
                raise RecipeError(
                    f"{recipe.path}: {step.label} would overwrite core(s) "
                    f"{core_ranges(earlier)} that {written[earlier[0]]} programs; add "
                    "overwrite_cores = true to the step to allow it"
                )
            held = held_cores(board, cores)
            if held:
                raise RecipeError(
                    f"{recipe.path}: {step.label} would overwrite: {describe_holdings(held)}; "
                    "add overwrite_cores = true to the step to allow it"
                )
        for core in cores:
            written[core] = step.label
