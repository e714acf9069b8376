"""Recipes: TOML files that chain procedures on one board, one run file per step.

::

    board = "mockchip://?seed=1&cores=4"
    out_dir = "runs"                 # optional, relative to the recipe file (default "runs")

    [[step]]
    procedure = "snapshot"
    cores = "0-3"

    [[step]]
    procedure = "program"
    weights = "weights.npy"          # "array" parameters: a .npy file, relative to the recipe

The whole recipe is validated before anything runs (:func:`load_recipe`); :func:`run_recipe`
runs the steps in order and stops at the first one that does not succeed.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from chipctl.runner import RunSummary, run_procedure
from drivers.board import Board
from drivers.errors import LimitError
from procedures import registry
from procedures.base import Procedure

log = logging.getLogger(__name__)

TOP_LEVEL_KEYS = {"board", "out_dir", "step"}
STEP_KEYS = {"procedure", "out"}
"""Keys of a step that are not procedure parameters (``out``: the run file name)."""


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the file, the step and the key."""


@dataclass(frozen=True)
class Step:
    """One validated step: procedure class, its validated parameters and its run file."""

    number: int
    procedure: type[Procedure]
    parameters: dict[str, Any]
    out: Path

    @property
    def label(self) -> str:
        """``step N (procedure)``, as messages name the step."""
        return f"step {self.number} ({self.procedure.name})"


@dataclass(frozen=True)
class Recipe:
    path: Path
    board: str
    out_dir: Path
    steps: tuple[Step, ...]


def load_npy(path: Path) -> np.ndarray:
    """An array from a .npy file; ``ValueError`` with the reason if missing or not .npy."""
    if not path.is_file():
        raise ValueError(f"no such .npy file: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a .npy array file: {exc}") from None
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path} holds several arrays (.npz); give one .npy array")
    return array


def load_recipe(path: str | Path, *, stamp: str | None = None) -> Recipe:
    """Parse and validate the whole recipe; :class:`RecipeError` at the first problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: TOML syntax error: {exc}") from None
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise RecipeError(f"{path}: unknown key(s) {unknown}; expected {sorted(TOP_LEVEL_KEYS)}")
    board = data.get("board")
    if not isinstance(board, str) or not board:
        raise RecipeError(f"{path}: key 'board' must be a board URL string")
    out_dir_value = data.get("out_dir", "runs")
    if not isinstance(out_dir_value, str):
        raise RecipeError(f"{path}: key 'out_dir' must be a string")
    out_dir = path.parent / out_dir_value
    raw_steps = data.get("step")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise RecipeError(f"{path}: no [[step]] tables")
    stamp = stamp or datetime.now().strftime("%Y%m%d-%H%M%S")
    steps = tuple(
        _step(path, number, raw, out_dir, stamp) for number, raw in enumerate(raw_steps, 1)
    )
    outs = [s.out for s in steps]
    if len(set(outs)) != len(outs):
        raise RecipeError(f"{path}: two steps write the same run file")
    return Recipe(path=path, board=board, out_dir=out_dir, steps=steps)


def _step(path: Path, number: int, raw: Any, out_dir: Path, stamp: str) -> Step:
    where = f"{path}: step {number}"
    if not isinstance(raw, Mapping):
        raise RecipeError(f"{where}: must be a table")
    name = raw.get("procedure")
    if not isinstance(name, str):
        raise RecipeError(f"{where}: key 'procedure' (a procedure name) is missing")
    try:
        cls = registry.get(name)
    except KeyError as exc:
        raise RecipeError(f"{where}: key 'procedure': {exc.args[0]}") from None
    except Exception as exc:  # a broken procedure module
        raise RecipeError(f"{where}: procedure {name!r} cannot be loaded: {exc}") from None
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
                value = load_npy(path.parent / value)
            except ValueError as exc:
                raise RecipeError(f"{where}: key {key!r}: {exc}") from None
        values[key] = value
    try:
        parameters = cls.validate(values)
    except LimitError as exc:
        raise RecipeError(f"{where}: {exc}") from None
    out_name = raw.get("out", f"{number:02d}-{name}-{stamp}.h5")
    if not isinstance(out_name, str) or not out_name:
        raise RecipeError(f"{where}: key 'out' must be a file name")
    return Step(number=number, procedure=cls, parameters=parameters, out=out_dir / out_name)


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
    with Board(recipe.board, timeout_s=timeout_s) as board:
        for step in recipe.steps:
            procedure = step.procedure(**step.parameters)
            summary = run_procedure(
                procedure, board, step.out, progress=progress, flush_interval_s=flush_interval_s
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
