"""Sweep specs: parse and validate a study's TOML file, expand it into independent points.

::

    name = "drift-mvm"           # study name (also the default result file name)
    kind = "mvm"                 # "mvm": MVM error; "inference": network accuracy
    sample = 0                   # optional: N random points of the grid instead of all of them
    sample_seed = 0

    [grid]                       # every combination of the point axes is one point
    seeds = "1-8"                # simulator seeds: one chip instance each (list, int or "A-B")
    mode = ["odp", "tdp"]        # programming mode
    gdp = [false, true]          # GDP refinement after program-and-verify
    compensation = ["none", "gdc"]   # measured within each point ("adabs": inference only)
    drift = ["25s", "1h", "1d"]  # times after programming, measured within each point
    # models = ["digits_mlp", {path = "my.onnx", dataset = "mnist1d"}]   # inference only
    # (a dataset: digits, digits-stratified, mnist1d, or an .npz file next to the spec)

    [settings]                   # fixed for every point (see MVM_SETTINGS, INFERENCE_SETTINGS)
    cores = 2

    [fault]                      # optional: link faults injected into some chip instances
    seeds = [3]
    board_options = "reset_after=40"

A *point* is one (seed, mode, gdp, model): one simulated chip, programmed once, then followed
through every drift time and measured with every compensation; each (drift, compensation) is
one result *row*. Its key is a hash of everything that determines its rows, so a re-run finds
the points it has already measured. The whole spec is validated before anything runs;
:class:`SpecError` names the file and the key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chipctl.datasets import DATASETS, DatasetError, load_npz
from chipctl.errors import ChipctlError
from procedures.base import parse_duration
from procedures.inference.compensation import COMPENSATIONS as INFER_COMPENSATIONS

KINDS = ("mvm", "inference")
MODES = ("odp", "tdp")
COMPENSATIONS = {"mvm": ("none", "gdc"), "inference": INFER_COMPENSATIONS}
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
"""Where bare model names (``"digits_mlp"``) are looked up: the shipped ONNX models."""

TOP_LEVEL_KEYS = {"name", "kind", "sample", "sample_seed", "grid", "settings", "fault"}
GRID_KEYS = {"seeds", "mode", "gdp", "compensation", "drift", "models"}
FAULT_KEYS = {"seeds", "board_options"}


@dataclass(frozen=True)
class Setting:
    """A fixed setting of a study: default, type and limits."""

    default: Any
    kind: type
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""
    choices: tuple[Any, ...] | None = None


MVM_SETTINGS: dict[str, Setting] = {
    "cores": Setting(2, int, 1, 16, "cores per chip, each with its own random weights"),
    "weight_sparsity": Setting(0.3, float, 0.0, 0.95, "fraction of zero weights [LG §IV]"),
    "inputs": Setting(1024, int, 256, 8192, "random test inputs per core and measurement"),
    "input_sparsity": Setting(0.3, float, 0.0, 0.95, "fraction of zero inputs"),
    "weight_seed": Setting(0, int, 0, None, "seed of the weights (the same on every chip)"),
    "input_seed": Setting(0, int, 0, None, "seed of the test inputs"),
}
INFERENCE_SETTINGS: dict[str, Setting] = {
    "cores": Setting(16, int, 1, 64, "cores of each simulated chip (enough for the model)"),
    "samples": Setting(200, int, 1, 100000, "test inputs per accuracy"),
    "dataset": Setting(
        "",
        str,
        description="data set of models given as bare names or paths: a built-in one "
        "(chipctl.datasets.DATASETS) or an .npz file, relative to the spec's folder",
    ),
    "input_seed": Setting(
        0, int, 0, None, "seed of the inference procedure (calibration inputs, AdaBS batches)"
    ),
}
SETTINGS = {"mvm": MVM_SETTINGS, "inference": INFERENCE_SETTINGS}


class SpecError(ChipctlError, ValueError):
    """A sweep spec that cannot run; the message names the file and the key."""


@dataclass(frozen=True)
class Model:
    """An inference model of the grid: its label in the results, file and data set."""

    label: str
    path: str
    dataset: str


@dataclass(frozen=True)
class Point:
    """One independent task: a chip instance programmed once and measured at every row.

    Attributes:
        key: hash of everything that determines the point's rows (see :func:`point_key`).
        kind: "mvm" or "inference".
        seed: simulator seed (the chip instance).
        mode: "odp" or "tdp".
        gdp: GDP refinement after program-and-verify.
        model: model label ("" for kind mvm).
        model_path: absolute ONNX path ("" for kind mvm).
        dataset: data set of the model: a built-in name or an .npz file's absolute path ("" for
            kind mvm).
        drift: drift time labels as given, e.g. ("25s", "1h", "1d").
        drift_s: the same in seconds, ascending.
        compensation: compensations measured at every drift time.
        settings: the study's fixed settings.
        board_options: extra simulator URL options (fault injection), "" for none.
    """

    key: str
    kind: str
    seed: int
    mode: str
    gdp: bool
    model: str
    model_path: str
    dataset: str
    drift: tuple[str, ...]
    drift_s: tuple[float, ...]
    compensation: tuple[str, ...]
    settings: Mapping[str, Any]
    board_options: str = ""

    @property
    def board_url(self) -> str:
        """The simulated board this point builds (few cores: cheap)."""
        url = f"mockchip://?seed={self.seed}&cores={self.settings['cores']}"
        return f"{url}&{self.board_options}" if self.board_options else url

    @property
    def configuration(self) -> dict[str, Any]:
        """The point's axes other than the seed (what the summary groups by)."""
        return {"mode": self.mode, "gdp": self.gdp, "model": self.model}


@dataclass(frozen=True)
class Spec:
    """A validated sweep spec.

    Attributes:
        path: the spec file.
        text: its TOML text (stored in the result file).
        name: study name.
        kind: "mvm" or "inference".
        seeds, modes, gdps, models: the point axes.
        drift: drift time labels; drift_s the same in seconds (ascending).
        compensation: compensations measured within each point.
        settings: fixed settings, all given or defaulted.
        sample, sample_seed: N random points of the grid (0: all of them).
        fault_seeds, fault_options: simulator URL options injected into those seeds' boards.
    """

    path: Path
    text: str
    name: str
    kind: str
    seeds: tuple[int, ...]
    modes: tuple[str, ...]
    gdps: tuple[bool, ...]
    models: tuple[Model, ...]
    drift: tuple[str, ...]
    drift_s: tuple[float, ...]
    compensation: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    sample: int = 0
    sample_seed: int = 0
    fault_seeds: frozenset[int] = frozenset()
    fault_options: str = ""

    @property
    def study(self) -> dict[str, Any]:
        """What every row of a result file must share: kind, settings, drift, compensation.

        A result file belongs to one study; the point axes (seeds, modes, gdp, models) may grow
        between runs, these may not (:class:`~chipctl.sweep.store.ResultStore` refuses).
        """
        return {
            "kind": self.kind,
            "settings": dict(self.settings),
            "drift": list(self.drift),
            "compensation": list(self.compensation),
        }

    def points(self) -> list[Point]:
        """All points of the grid, or the random sample of them, in a stable order."""
        models = self.models or (Model("", "", ""),)
        grid = list(itertools.product(self.seeds, self.modes, self.gdps, models))
        if self.sample:
            rng = np.random.default_rng(self.sample_seed)
            # A permutation's prefix: a larger sample with the same seed is a superset.
            chosen = sorted(rng.permutation(len(grid))[: self.sample].tolist())
            grid = [grid[i] for i in chosen]
        return [self._point(*axes) for axes in grid]

    def _point(self, seed: int, mode: str, gdp: bool, model: Model) -> Point:
        options = self.fault_options if seed in self.fault_seeds else ""
        axes = {
            "seed": seed,
            "mode": mode,
            "gdp": gdp,
            "model": model.label,
            "dataset": model.dataset,
            "board_options": options,
        }
        return Point(
            key=point_key(self.study, axes),
            kind=self.kind,
            seed=seed,
            mode=mode,
            gdp=gdp,
            model=model.label,
            model_path=model.path,
            dataset=model.dataset,
            drift=self.drift,
            drift_s=self.drift_s,
            compensation=self.compensation,
            settings=dict(self.settings),
            board_options=options,
        )


def canonical_json(value: Any) -> str:
    """Sorted, compact JSON: the same text for the same content."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def point_key(study: Mapping[str, Any], axes: Mapping[str, Any]) -> str:
    """Hash (16 hex digits of SHA-256) of a point's study settings and axes."""
    text = canonical_json({"study": study, "point": axes})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- parsing -------------------------------------------------------------------------------------


def load_spec(path: str | Path) -> Spec:
    """Parse and validate a whole sweep spec.

    Args:
        path: the TOML file.

    Returns:
        The validated :class:`Spec`.

    Raises:
        SpecError: at the first problem, naming the file and the key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the sweep spec: {exc}") from None
    return parse_spec(text, path)


def parse_spec(text: str, path: str | Path = "<spec>") -> Spec:
    """Validate a sweep spec given as TOML text (``path`` for messages and relative models)."""
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: TOML syntax error: {exc}") from None
    _known(path, "", data, TOP_LEVEL_KEYS)
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SpecError(f"{path}: key 'name' must be a study name (letters, digits, _ . -)")
    kind = data.get("kind", "mvm")
    if kind not in KINDS:
        raise SpecError(f"{path}: key 'kind': {kind!r} is not one of {list(KINDS)}")
    grid = data.get("grid")
    if not isinstance(grid, Mapping):
        raise SpecError(f"{path}: a [grid] table is required")
    _known(path, "grid.", grid, GRID_KEYS)
    seeds = _seeds(path, "grid.seeds", grid.get("seeds"))
    modes = _choices(path, "grid.mode", grid.get("mode", ["tdp"]), MODES, str)
    gdps = _choices(path, "grid.gdp", grid.get("gdp", [False]), (False, True), bool)
    compensation = _choices(
        path, "grid.compensation", grid.get("compensation", ["none"]), COMPENSATIONS[kind], str
    )
    drift, drift_s = _drift(path, grid.get("drift"))
    settings = _settings(path, kind, data.get("settings", {}))
    if settings.get("dataset"):
        _dataset(path, "settings.dataset", settings["dataset"])  # checked even if unused
    models = _models(path, kind, grid.get("models"), settings)
    sample = _integer(path, "sample", data.get("sample", 0), 0)
    sample_seed = _integer(path, "sample_seed", data.get("sample_seed", 0), 0)
    fault_seeds, fault_options = _fault(path, data.get("fault"))
    return Spec(
        path=path,
        text=text,
        name=name,
        kind=kind,
        seeds=seeds,
        modes=modes,
        gdps=gdps,
        models=models,
        drift=drift,
        drift_s=drift_s,
        compensation=compensation,
        settings=settings,
        sample=sample,
        sample_seed=sample_seed,
        fault_seeds=fault_seeds,
        fault_options=fault_options,
    )


def _known(path: Path, prefix: str, table: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        keys = ", ".join(f"'{prefix}{k}'" for k in unknown)
        raise SpecError(f"{path}: unknown key(s) {keys}; known: {sorted(known)}")


def _integer(path: Path, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{path}: key '{key}' must be an integer ≥ {minimum}, got {value!r}")
    return value


def _seeds(path: Path, key: str, value: Any) -> tuple[int, ...]:
    if value is None:
        raise SpecError(f"{path}: key '{key}' is required: simulator seeds, e.g. \"1-8\"")
    seeds: list[int] = []
    if isinstance(value, str):
        for part in value.replace(" ", "").split(","):
            match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not match:
                raise SpecError(f"{path}: key '{key}': {part!r} is not a seed or range A-B")
            low, high = int(match.group(1)), int(match.group(2) or match.group(1))
            if high < low:
                raise SpecError(f"{path}: key '{key}': range {part!r} runs backwards")
            seeds.extend(range(low, high + 1))
    elif isinstance(value, list):
        seeds = [_integer(path, key, v, 0) for v in value]
    else:
        seeds = [_integer(path, key, value, 0)]
    if not seeds:
        raise SpecError(f"{path}: key '{key}': no seeds")
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"{path}: key '{key}': seeds repeat")
    return tuple(seeds)


def _choices(path: Path, key: str, value: Any, allowed: tuple[Any, ...], kind: type) -> tuple:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise SpecError(f"{path}: key '{key}': empty list")
    for v in values:
        if not isinstance(v, kind) or v not in allowed:
            raise SpecError(f"{path}: key '{key}': {v!r} is not one of {list(allowed)}")
    if len(set(values)) != len(values):
        raise SpecError(f"{path}: key '{key}': values repeat")
    return tuple(values)


def _drift(path: Path, value: Any) -> tuple[tuple[str, ...], tuple[float, ...]]:
    if value is None:
        raise SpecError(f'{path}: key \'grid.drift\' is required: times like ["25s", "1h"]')
    values = value if isinstance(value, list) else [value]
    if not values:
        raise SpecError(f"{path}: key 'grid.drift': empty list")
    times: dict[str, float] = {}
    for v in values:
        text = str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
        if not isinstance(text, str):
            raise SpecError(f"{path}: key 'grid.drift': {v!r} is not a duration like 25s, 1h, 1d")
        text = text.strip()
        try:
            seconds = parse_duration(text)
        except ValueError as exc:
            raise SpecError(f"{path}: key 'grid.drift': {exc}") from None
        if not 0 < seconds <= 3.2e9:
            raise SpecError(f"{path}: key 'grid.drift': {text!r} must be > 0 and ≤ 100 years")
        times[text] = seconds
    if len(times) != len(values) or len(set(times.values())) != len(times):
        raise SpecError(f"{path}: key 'grid.drift': times repeat")
    ordered = sorted(times.items(), key=lambda item: item[1])
    return tuple(k for k, _ in ordered), tuple(s for _, s in ordered)


def _settings(path: Path, kind: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise SpecError(f"{path}: key 'settings' must be a table")
    declared = SETTINGS[kind]
    _known(path, "settings.", table, set(declared))
    settings: dict[str, Any] = {}
    for name, setting in declared.items():
        value: Any = table.get(name, setting.default)
        key = f"settings.{name}"
        if setting.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, setting.kind):
            raise SpecError(f"{path}: key '{key}': {value!r} is not {setting.kind.__name__}")
        if setting.choices is not None and value not in setting.choices:
            raise SpecError(f"{path}: key '{key}': {value!r} is not one of {list(setting.choices)}")
        number: Any = value  # numeric settings: int or float, checked above
        if setting.minimum is not None and number < setting.minimum:
            raise SpecError(f"{path}: key '{key}': {value} is below the minimum {setting.minimum}")
        if setting.maximum is not None and number > setting.maximum:
            raise SpecError(f"{path}: key '{key}': {value} is above the maximum {setting.maximum}")
        settings[name] = value
    return settings


def _models(path: Path, kind: str, value: Any, settings: Mapping[str, Any]) -> tuple[Model, ...]:
    if kind != "inference":
        if value is not None:
            raise SpecError(f"{path}: key 'grid.models' is only for kind = \"inference\"")
        return ()
    if not isinstance(value, list) or not value:
        raise SpecError(
            f"{path}: key 'grid.models' is required for kind inference: a list of "
            "model names, .onnx paths or {path, dataset} tables"
        )
    models = []
    for entry in value:
        if isinstance(entry, str):
            label, dataset = entry, settings["dataset"]
        elif isinstance(entry, Mapping) and set(entry) <= {"path", "dataset"} and "path" in entry:
            label, dataset = entry["path"], entry.get("dataset", settings["dataset"])
        else:
            raise SpecError(
                f"{path}: key 'grid.models': {entry!r} is not a model name, a path "
                "or a {path, dataset} table"
            )
        if not isinstance(dataset, str) or not dataset:
            raise SpecError(
                f"{path}: key 'grid.models': model {label!r} needs a data set: one of "
                f"{list(DATASETS)} or an .npz file (its dataset or settings.dataset)"
            )
        dataset = _dataset(path, "grid.models", dataset)
        models.append(Model(label, str(_model_file(path, label)), dataset))
    if len({m.label for m in models}) != len(models):
        raise SpecError(f"{path}: key 'grid.models': models repeat")
    return tuple(models)


def _dataset(path: Path, key: str, value: str) -> str:
    """A built-in data set's name as given, or an .npz file's absolute path: relative paths
    are from the spec's folder (as model paths), and the file is checked whole now
    (:func:`chipctl.datasets.load_npz`), before any point runs."""
    if value in DATASETS:
        return value
    file = Path(value).expanduser()
    file = file if file.is_absolute() else path.parent / file
    if not file.exists() and file.suffix != ".npz":
        raise SpecError(
            f"{path}: key '{key}': data set {value!r} is not a built-in one "
            f"({', '.join(DATASETS)}) and no such file in {path.parent}; give one of those or "
            "an .npz file with arrays x and y"
        )
    try:
        load_npz(file)
    except DatasetError as exc:
        raise SpecError(f"{path}: key '{key}': data set {exc}") from None
    return str(file.resolve())


def _model_file(path: Path, label: str) -> Path:
    candidates = [path.parent / label, MODELS_DIR / label, MODELS_DIR / f"{label}.onnx"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise SpecError(
        f"{path}: key 'grid.models': no model file {label!r} (looked in "
        f"{path.parent} and {MODELS_DIR})"
    )


def _fault(path: Path, table: Any) -> tuple[frozenset[int], str]:
    if table is None:
        return frozenset(), ""
    if not isinstance(table, Mapping):
        raise SpecError(f"{path}: key 'fault' must be a table")
    _known(path, "fault.", table, FAULT_KEYS)
    seeds = _seeds(path, "fault.seeds", table.get("seeds"))
    options = table.get("board_options")
    if not isinstance(options, str) or not re.fullmatch(
        r"[A-Za-z_]+=[^&=]+(&[A-Za-z_]+=[^&=]+)*", options
    ):
        raise SpecError(
            f"{path}: key 'fault.board_options' must be simulator URL options like "
            '"reset_after=40" or "corrupt=1e-4&fault_seed=1"'
        )
    reserved = {"seed", "cores"} & {part.split("=")[0] for part in options.split("&")}
    if reserved:
        raise SpecError(f"{path}: key 'fault.board_options' may not set {sorted(reserved)}")
    return frozenset(seeds), options
