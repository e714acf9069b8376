"""The procedure catalog: every procedure, and what the front ends need to know about it.

One :class:`Entry` per procedure says how it is built from raw parameters, whether it needs an
opened bench station, which cores it erases or reprograms, what runs after it (calibrate
stores its calibration set) and which of its streams describe a core. The CLI, recipes, the
TUI, ``chipctl resume`` and sweeps all go through :func:`build` and the entries; none of them
branches on a procedure's name.

Adding a procedure: write its module under ``procedures/`` and add one entry here (or call
:func:`register` from your own code); it becomes a ``chipctl`` subcommand, a recipe step, a TUI
entry, and ``chipctl resume`` continues it (``docs/writing-procedures.md``).

Entries name their class as ``"module:Class"`` and import it on first use, so a broken or slow
procedure module never stops the others from loading. ``tests/test_architecture.py`` checks
those strings against the layer rules as if they were import statements.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from chipctl import core_views
from chipctl.core_views import CoreView
from chipctl.errors import ChipctlError
from drivers.errors import LimitError
from procedures.base import Procedure, Record


class CatalogError(ChipctlError, LookupError):
    """An unknown procedure name, or a catalog entry whose class cannot be loaded."""


class PostStep(Protocol):
    """Something that runs after a procedure, fed the run's records (a runner subscriber).

    ``message()`` is what the front end tells the user afterwards ("" for nothing)."""

    def __call__(self, record: Record) -> None: ...

    def message(self) -> str: ...


@dataclass(frozen=True)
class RunContext:
    """What the front end knows beyond the parameters, for an entry's post-run steps.

    Attributes:
        calibration_dir: the calibration store chosen by the user (None: the default store).
        resumed: the run continues an interrupted one.
        state: the checkpoint state a resumed run continues from.
        overwrite_cores: the user allows overwriting cores that the chip ledger says hold
            something (:func:`chipctl.ledger.check_overwrite`). The CLI and recipes pass the
            user's choice (default there: no); the default True leaves scripts and the TUI
            unguarded, as before the ledger.
    """

    calibration_dir: Path | None = None
    resumed: bool = False
    state: Mapping[str, Any] | None = None
    overwrite_cores: bool = True


def _no_cores(parameters: Mapping[str, Any]) -> tuple[int, ...]:
    """No cores: the procedure writes no conductances."""
    return ()


def _all_cores(parameters: Mapping[str, Any]) -> tuple[int, ...]:
    """Every core of the ``cores`` parameter."""
    return tuple(int(core) for core in parameters.get("cores", ()))


def _reference_cores(parameters: Mapping[str, Any]) -> tuple[int, ...]:
    """Calibrate's cores when it programs reference weights onto them (``program_reference``)."""
    return _all_cores(parameters) if parameters.get("program_reference") else ()


def _describe_nothing(parameters: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """No description beyond the procedure's name (the ledger says which procedure wrote)."""
    return {}


def _describe_program(parameters: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Program: the sha256 of each core's (256, 256) weights as programmed, from the weights
    parameter; for a matrix tiled over the cores also the core's tile of it (``tile``: which
    rows and columns of the whole matrix, and the whole matrix's sha256)."""
    from chipctl.ledger import weights_hash
    from procedures.program_verify import weight_layout

    layout = weight_layout(np.asarray(parameters.get("weights")), _all_cores(parameters))
    whole = None if layout.tiling is None else weights_hash(np.asarray(parameters["weights"]))
    out = {}
    for core, matrix in zip(layout.cores, layout.matrices, strict=True):
        out[core] = {
            "holds": weights_hash(matrix),
            "source": "parameter weights",
            "mode": parameters.get("mode"),
        }
        tile = layout.tile_of(core)
        if tile is not None:
            out[core]["tile"] = {
                "rows": [tile.row_start, tile.row_stop],
                "cols": [tile.col_start, tile.col_stop],
                "of_matrix": list(np.shape(parameters["weights"])),
                "matrix_holds": whole,
            }
    return out


def _describe_reference(parameters: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Calibrate with ``program_reference``: its reference weights of its seed."""
    return {
        core: {
            "holds": f"reference weights (calibrate, seed {parameters.get('seed', 0)})",
            "source": "calibrate seed",
            "mode": parameters.get("reference_mode"),
        }
        for core in _reference_cores(parameters)
    }


def _describe_network(parameters: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Infer: the network tiles of its model file."""
    model = str(parameters.get("model", "?"))
    return {
        core: {"holds": f"network tiles of {model}", "source": model}
        for core in _all_cores(parameters)
    }


def _no_post_steps(procedure: Procedure, context: RunContext) -> list[PostStep]:
    """Nothing runs after the procedure."""
    return []


def _store_calibration_set(procedure: Procedure, context: RunContext) -> list[PostStep]:
    """Calibrate stores its set in the chosen store (or, resumed, the one its checkpoint names)."""
    from chipctl.calibration import (
        CalibrationRecorder,
        CalibrationStore,
        ResumedCalibrationRecorder,
    )

    stored = (context.state or {}).get("calibration_store") or None
    store = CalibrationStore(context.calibration_dir or stored)
    # Kept in the checkpoints, so `chipctl resume` stores the set where this run would have.
    procedure.calibration_store = str(store.root)  # type: ignore[attr-defined]
    recorder = ResumedCalibrationRecorder if context.resumed else CalibrationRecorder
    return [recorder(store)]


@dataclass(frozen=True)
class Entry:
    """What one procedure is to the front ends.

    Attributes:
        name: the procedure's name (``Procedure.name``, the run files' ``procedure``).
        target: its class as ``"module:Class"``, imported on first use.
        needs_station: built with ``station=`` an opened bench station (supply, SMU, ...);
            front ends open the station (a station file, or the simulated one).
        overwrites: validated parameters → the cores whose conductances the run erases or
            reprograms (empty: it writes no conductances).
        describe: validated parameters → per overwritten core what it will hold, for the chip
            ledger (``holds``, ``source``, ``mode``; :mod:`chipctl.ledger`).
        post_steps: (procedure, context) → steps that consume the run's records afterwards.
        options: run-context options the front ends offer for it (``"calibration_dir"``).
        core_view: which of its streams describe a core (chip map, core detail).
        command: the ``chipctl`` subcommand generated for it ("": the name; None: no
            generated command, a hand-written one covers it).
    """

    name: str
    target: str
    needs_station: bool = False
    overwrites: Callable[[Mapping[str, Any]], tuple[int, ...]] = _no_cores
    describe: Callable[[Mapping[str, Any]], dict[int, dict[str, Any]]] = _describe_nothing
    post_steps: Callable[[Procedure, RunContext], list[PostStep]] = _no_post_steps
    options: tuple[str, ...] = ()
    core_view: CoreView = field(default_factory=CoreView)
    command: str | None = ""

    @property
    def cls(self) -> type[Procedure]:
        """The procedure class (imported now); :class:`CatalogError` if it cannot be."""
        module_name, _, class_name = self.target.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except Exception as exc:  # a broken procedure module: say which, keep the rest
            raise CatalogError(
                f"procedure {self.name!r} ({self.target}) cannot be loaded: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, Procedure)) or cls.name != self.name:
            raise CatalogError(
                f"catalog entry {self.name!r} -> {self.target} is not that procedure"
            )
        return cls

    @property
    def may_overwrite(self) -> bool:
        """Whether some parameters make the procedure overwrite cores (it gets the chip-ledger
        guard's ``--overwrite-cores`` / ``overwrite_cores``)."""
        return self.overwrites is not _no_cores

    @property
    def command_name(self) -> str | None:
        """The generated subcommand's name, or None."""
        return None if self.command is None else (self.command or self.name)


ENTRIES: dict[str, Entry] = {
    item.name: item
    for item in (
        Entry("snapshot", "procedures.snapshot:ConductanceSnapshot"),
        Entry(
            "program",
            "procedures.program_verify:ProgramVerify",
            overwrites=_all_cores,
            describe=_describe_program,
            core_view=CoreView(core_views.program_metrics, "program", core_views.program_detail),
        ),
        Entry(
            "characterize",
            "procedures.characterize:Characterize",
            core_view=CoreView(core_views.characterize_metrics),
        ),
        Entry(
            "calibrate",
            "procedures.calibrate:Calibrate",
            overwrites=_reference_cores,
            describe=_describe_reference,
            post_steps=_store_calibration_set,
            options=("calibration_dir",),
            core_view=CoreView(
                core_views.calibrate_metrics, "calibration", core_views.calibrate_detail
            ),
        ),
        Entry(
            "drift",
            "procedures.drift:DriftMonitor",
            core_view=CoreView(core_views.drift_metrics, "drift", core_views.drift_detail),
        ),
        Entry(
            "compensate",
            "procedures.gdc:Compensate",
            core_view=CoreView(core_views.compensate_metrics),
        ),
        # The network and data are files, which procedures never read: chipctl's subclass
        # loads them from the model/dataset parameters (procedures.infer.Infer takes objects).
        Entry(
            "infer",
            "chipctl.inference:InferModel",
            overwrites=_all_cores,
            describe=_describe_network,
        ),
        # Station procedures: `chipctl power up|down` and `chipctl device-iv` are their
        # hand-written commands (kept for their short option names).
        Entry("power_up", "procedures.power:PowerUp", needs_station=True, command=None),
        Entry("power_down", "procedures.power:PowerDown", needs_station=True, command=None),
        Entry("device_iv", "procedures.device_iv:DeviceIV", needs_station=True, command=None),
    )
}
"""The catalog by name. Read it through the functions below; :func:`register` adds to it
(tests may patch it with ``monkeypatch.setitem``)."""


def register(entry: Entry, *, replace: bool = False) -> None:
    """Add ``entry`` to the catalog (a lab's own procedure); ``replace`` to override one."""
    if entry.name in ENTRIES and not replace:
        raise CatalogError(f"procedure {entry.name!r} is already in the catalog")
    ENTRIES[entry.name] = entry


def unregister(name: str) -> None:
    """Remove the entry called ``name`` (tests, plug-ins being unloaded)."""
    ENTRIES.pop(name, None)


def names() -> list[str]:
    """Names of all catalogued procedures, sorted."""
    return sorted(ENTRIES)


def entries() -> list[Entry]:
    """All entries, sorted by name."""
    return [ENTRIES[name] for name in names()]


def entry(name: str) -> Entry:
    """The entry called ``name``; :class:`CatalogError` listing the known ones."""
    try:
        return ENTRIES[name]
    except KeyError:
        raise CatalogError(f"unknown procedure {name!r}; known: {names()}") from None


def procedure_class(name: str) -> type[Procedure]:
    """The procedure class called ``name``."""
    return entry(name).cls


def available() -> dict[str, type[Procedure]]:
    """Every procedure whose module loads, by name (broken ones left out)."""
    classes = {}
    for item in entries():
        try:
            classes[item.name] = item.cls
        except CatalogError:
            continue
    return classes


# -- building a procedure from raw values -----------------------------------------------------


def load_npy(path: Path) -> np.ndarray:
    """An array from a .npy file; ``ValueError`` with the reason if missing or not .npy."""
    if not path.is_file():
        raise ValueError(f"no such .npy file: {path}")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    if magic[:2] == b"PK":
        raise ValueError(f"{path} holds several arrays (.npz); give one .npy array")
    if magic != b"\x93NUMPY":
        raise ValueError(f"{path} is not a .npy array file (no NumPy header)")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ValueError(
                f"{path} is not a .npy array file: it holds Python objects, not numbers"
            ) from None
        raise ValueError(f"{path} is not a .npy array file: {exc}") from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a .npy array file (damaged: {exc})") from None
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path} is not a single .npy array")
    return array


def convert(
    cls: type[Procedure], raw: Mapping[str, Any], *, base_dir: Path | None = None
) -> dict[str, Any]:
    """Raw values (CLI strings, recipe TOML values, TUI form fields) → validated parameters.

    ``"array"`` parameters given as a path (str or Path) are loaded from that .npy file,
    relative to ``base_dir`` if given; every other kind is converted and checked by the
    parameter's own :meth:`~procedures.base.Parameter.validate` (``"1d"`` for a duration,
    ``"0-3,8"`` for cores, ``"true"`` for a switch). ``LimitError`` names the parameter.
    """
    declared = {p.name: p for p in cls.parameters}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        parameter = declared.get(key)
        if parameter is None:
            raise LimitError(f"{cls.name}: unknown parameter {key!r}; known: {sorted(declared)}")
        if parameter.kind == "array" and isinstance(value, str | Path):
            path = Path(value)
            if base_dir is not None and not path.is_absolute():
                path = base_dir / path
            try:
                value = load_npy(path)
            except ValueError as exc:
                raise LimitError(f"parameter {key}: {exc}") from None
        values[key] = value
    return cls.validate(values)


def build(
    name: str,
    raw: Mapping[str, Any] | None = None,
    *,
    station: Any = None,
    base_dir: Path | None = None,
) -> Procedure:
    """Procedure ``name`` from raw parameter values: the one way front ends make procedures.

    Args:
        name: a catalog name.
        raw: parameter values as the user gave them (see :func:`convert`); missing ones take
            their defaults.
        station: the opened bench station, for entries that need one.
        base_dir: where relative .npy paths are found (a recipe's folder).

    Raises:
        CatalogError: unknown name or a procedure module that does not load.
        LimitError: a bad value (naming the parameter) or a missing station.
    """
    item = entry(name)
    cls = item.cls
    parameters = convert(cls, raw or {}, base_dir=base_dir)
    if item.needs_station:
        if station is None:
            raise LimitError(f"{name} needs a bench station (a station file or the simulated one)")
        return cls(station=station, **parameters)
    return cls(**parameters)


def _entry_of(procedure: Procedure) -> Entry | None:
    """The catalog entry of ``procedure``, or None for a script's own, uncatalogued class."""
    return ENTRIES.get(procedure.name)


def overwritten_cores(procedure: Procedure) -> tuple[int, ...]:
    """The cores whose conductances ``procedure`` will erase or reprogram, as its entry says
    (narrowed to the procedure's own :attr:`~procedures.base.Procedure.cores_written`)."""
    item = _entry_of(procedure)
    if item is None:
        return ()
    cores = set(item.overwrites(procedure.params))
    written = procedure.cores_written
    if written is not None:
        cores &= {int(c) for c in written}
    return tuple(sorted(cores))


def describe_cores(procedure: Procedure) -> dict[int, dict[str, Any]]:
    """What each core ``procedure`` overwrites will hold, as its entry describes it (for the
    chip ledger); {} for a procedure that is not catalogued."""
    item = _entry_of(procedure)
    return {} if item is None else item.describe(procedure.params)


def post_steps(procedure: Procedure, context: RunContext | None = None) -> list[PostStep]:
    """The steps that run after ``procedure`` (its entry's ``post_steps``); none if the
    procedure is not catalogued (a script's own class)."""
    item = _entry_of(procedure)
    return [] if item is None else item.post_steps(procedure, context or RunContext())


def messages(steps: Iterable[PostStep]) -> list[str]:
    """The non-empty messages of finished post-run steps."""
    return [text for text in (step.message() for step in steps) if text]
