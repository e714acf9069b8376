"""Procedure framework: declared parameters, typed records and the ``Procedure`` base class.

A procedure drives a :class:`~drivers.board.Board` and *yields records*; it never touches files
or screens (PyMeasure's Worker and Bluesky's documents work the same way). One runner
(``chipctl.runner``) fans the records out to the HDF5 run file, the progress bar, the TUI and the
log. The life cycle of a run, as records::

    Start  (procedure, validated parameters, declared streams, default plot, board identity)
    Progress / Data / Checkpoint ...   (any number, any order)
    Stop   (status "success" | "aborted" | "failed", reason)

``Checkpoint`` marks a point from which the run can be resumed: everything yielded before it is
complete, and its ``state`` (JSON-serialisable) is what ``execute(resume_from=state)`` needs to
continue. Scripts can simply ``list(procedure.run(board))``.
"""

from __future__ import annotations

import logging
import math
import re
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from drivers.board import Board
from drivers.errors import DriverError, LimitError

log = logging.getLogger(__name__)

Status = Literal["success", "aborted", "failed"]


# -- parameters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """A declared procedure parameter with units, default and limits.

    ``kind`` is one of ``float``, ``int``, ``bool``, ``str``, ``"cores"`` (a list of core ids,
    given as a list or as text like ``"0-3,8"``), ``"duration"`` (seconds as a float, given as
    a number of seconds or as text like ``"25s"``, ``"90min"``, ``"1h"``, ``"1d"``, ``"2w"``:
    :func:`parse_duration`) or ``"array"`` (a finite float64 numpy array, e.g. a weight matrix;
    the CLI loads it from a .npy file, the run file stores it as a dataset).
    """

    name: str
    default: Any
    kind: Any = float
    units: str = ""
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None

    def validate(self, value: Any) -> Any:
        """The value converted to the declared kind, or ``LimitError`` naming the parameter."""
        if value is None:
            raise LimitError(f"parameter {self.name} is required (it has no default)")
        try:
            converted = self._convert(value)
        except (TypeError, ValueError) as exc:
            raise LimitError(f"parameter {self.name}: {exc}") from None
        if self.choices is not None and converted not in self.choices:
            raise LimitError(
                f"parameter {self.name}: {converted!r} is not one of {list(self.choices)}"
            )
        if isinstance(converted, np.ndarray):
            return converted
        values = converted if isinstance(converted, list) else [converted]
        for v in values:
            if isinstance(v, int | float) and not isinstance(v, bool):
                if self.minimum is not None and v < self.minimum:
                    limit = f"{self.minimum} {self.units}".rstrip()
                    raise LimitError(f"parameter {self.name}: {v} is below the minimum {limit}")
                if self.maximum is not None and v > self.maximum:
                    limit = f"{self.maximum} {self.units}".rstrip()
                    raise LimitError(f"parameter {self.name}: {v} is above the maximum {limit}")
        return converted

    def _convert(self, value: Any) -> Any:
        if self.kind == "cores":
            return parse_cores(value)
        if self.kind == "duration":
            return parse_duration(value)
        if self.kind == "array":
            array = np.asarray(value)
            if array.dtype == object or not (
                np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
            ):
                raise ValueError(f"expected a numeric array, got dtype {array.dtype}")
            array = array.astype(np.float64)
            if not np.all(np.isfinite(array)):
                raise ValueError("array contains NaN or infinite values")
            return array
        if self.kind is bool:
            if isinstance(value, bool | np.bool_):
                return bool(value)
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValueError(f"{value!r} is not a boolean")
        if self.kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"{value!r} is not an integer")
            return int(value)
        if self.kind is float:
            if isinstance(value, bool):
                raise ValueError(f"{value!r} is not a number")
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"{value!r} is not finite")
            return number
        if self.kind is str:
            if not isinstance(value, str):
                raise ValueError(f"{value!r} is not text")
            return value
        raise TypeError(f"unknown parameter kind {self.kind!r}")


def declare(
    name: str, default: Any, kind: Any, units: str, description: str, **limits: Any
) -> Parameter:
    """A :class:`Parameter` in one line: name, default, kind, units, description, limits."""
    return Parameter(name, default, kind=kind, units=units, description=description, **limits)


DURATION_UNITS_S: dict[str, float] = {
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
"""Units a duration may carry, in s (a bare number is seconds)."""

_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|min|m|h|d|w)?\s*")


def parse_duration(value: Any) -> float:
    """Seconds from a number or from text like ``"86400"``, ``"25s"``, ``"90min"``, ``"1h"``,
    ``"1d"``, ``"2w"``; finite and ≥ 0, else ``ValueError`` saying what is accepted. The one
    parser of durations for the CLI, recipes, sweeps, the TUI and procedures."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float | np.integer | np.floating):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration like 25s, 90min, 1h, 1d, 2w")
        seconds = float(match.group(1)) * DURATION_UNITS_S[match.group(2) or "s"]
    else:
        raise ValueError(f"{value!r} is not a duration like 25s, 90min, 1h, 1d, 2w")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a finite duration ≥ 0")
    return seconds


MAX_CORE_RANGE = 1 << 16
"""Largest number of cores one ``a-b`` range of text may name (far above any chip)."""


def _core_id_text(text: str, part: str) -> int:
    """One core id of a core list given as text: a whole, non-negative decimal number."""
    if not text:
        raise ValueError(f"core range {part!r} is incomplete (expected FIRST-LAST)")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a core id") from None
    if not math.isfinite(number) or number.is_integer():
        raise ValueError(f"{text!r} is not a core id (write whole numbers: 0, 1, 2, ...)")
    raise ValueError(f"{text} is not a whole number (core ids are 0, 1, 2, ...)")


def _cores_from_text(value: str) -> list[int]:
    cores: list[int] = []
    for part in value.replace(" ", "").split(","):
        if not part:
            continue
        if part.startswith("-"):
            first = part[1:].split("-", 1)[0]
            try:
                float(first)
            except ValueError:
                raise ValueError(f"{part!r} is not a core id or range") from None
            raise ValueError(f"core id -{first} is negative (core ids are 0, 1, 2, ...)")
        if "-" in part:
            first, last = part.split("-", 1)
            if "-" in last.lstrip("-"):
                raise ValueError(f"{part!r} is not a core id or range (FIRST-LAST)")
            if last.startswith("-"):
                raise ValueError(f"core range {part!r}: core id {last} is negative")
            low, high = _core_id_text(first, part), _core_id_text(last, part)
            if high < low:
                raise ValueError(f"core range {part!r} runs backwards")
            if high - low >= MAX_CORE_RANGE:
                raise ValueError(f"core range {part!r} names {high - low + 1} cores, too many")
            cores.extend(range(low, high + 1))
        else:
            cores.append(_core_id_text(part, part))
    return cores


def parse_cores(value: Any) -> list[int]:
    """Core ids from ``[0, 1]``, ``3`` or text like ``"0-3,8"``; sorted, no repeats.

    Raises ``ValueError`` naming what is wrong with the offending part: ``"-1"`` is a negative
    core id, ``"abc"`` not a core id, ``"1.5"`` not a whole number, ``"3-1"`` a range that runs
    backwards. Whether an id exists on the chip is checked by the caller (the parameter's
    maximum, the board's geometry).
    """
    if isinstance(value, str):
        cores = _cores_from_text(value)
    elif isinstance(value, int | np.integer) and not isinstance(value, bool):
        cores = [int(value)]
    elif isinstance(value, Sequence | np.ndarray):
        cores = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int | np.integer):
                raise ValueError(f"core id {item!r} is not an integer")
            cores.append(int(item))
    else:
        raise ValueError(f"{value!r} is not a list of core ids")
    if not cores:
        raise ValueError("no cores given")
    if len(set(cores)) != len(cores):
        raise ValueError(f"core ids repeat: {cores}")
    return sorted(cores)


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamSpec:
    """A declared data stream: rows of fixed shape and dtype, with units.

    Attributes:
        name: dataset name (letters, digits, underscores).
        shape: shape of one row (``()`` for scalars).
        dtype: numpy dtype string, e.g. "f4", "i8", "u1".
        units: UDUNITS-style unit string ("uS", "counts", "s", "1" for dimensionless).
        description: what one row is.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    units: str
    description: str = ""


@dataclass(frozen=True)
class Start:
    """First record of a run."""

    procedure: str
    parameters: dict[str, Any]
    streams: tuple[StreamSpec, ...]
    default_plot: tuple[str, str | None]
    metadata: dict[str, Any]
    total: int
    resumed: bool = False


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units of work finished."""

    done: int
    total: int
    message: str = ""


@dataclass(frozen=True, eq=False)
class Data:
    """One row (or, with ``rows=True``, several rows along axis 0) for a declared stream."""

    stream: str
    values: Any
    rows: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", np.asarray(self.values))


@dataclass(frozen=True)
class Checkpoint:
    """A resume point; ``state`` is JSON-serialisable and all earlier records are complete."""

    state: dict[str, Any]


@dataclass(frozen=True)
class Stop:
    """Last record of a run."""

    status: Status
    reason: str = ""
    elapsed_s: float = 0.0
    results: dict[str, Any] = field(default_factory=dict)


Record = Start | Progress | Data | Checkpoint | Stop


class Aborted(DriverError):
    """Raised inside a procedure at a safe point when the runner asked it to stop.

    Under the package's root error like every exception it raises, so ``except DriverError``
    around a procedure sees a stop too; :meth:`Procedure.run` catches it first and ends the run
    "aborted", not "failed"."""


# -- the base class ---------------------------------------------------------------------------


class Procedure(ABC):
    """Base class of all procedures.

    Subclasses declare ``name``, ``title``, ``parameters`` and implement :meth:`streams`,
    :meth:`execute` and, if the board needs more than ``safe_state``, :meth:`cleanup`.
    ``execute`` yields Progress/Data/Checkpoint records and calls ``self.checkpoint_safe()``
    between units of work, where an abort may take effect.
    """

    name: ClassVar[str]
    title: ClassVar[str] = ""
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    default_plot: ClassVar[tuple[str, str | None]] = ("", None)
    plot_series: ClassVar[tuple[str, tuple[str, ...]] | None] = None
    """(stream, labels): the default plot draws one line per value of that stream (e.g. the
    compensation of each accuracy row), labelled ``labels[value]``."""
    resumable: ClassVar[bool] = True
    """Whether ``execute(resume_from=...)`` can continue from a checkpoint."""
    resume_streams: ClassVar[tuple[str, ...]] = ()
    """Streams whose rows (up to the checkpoint) a resumed run gets back in
    ``resume_from["streams"]``: data too large for a checkpoint's state."""

    def __init__(self, **values: Any) -> None:
        self.params = self.validate(values)
        self.results: dict[str, Any] = {}
        self._should_stop: Callable[[], bool] = lambda: False

    @classmethod
    def validate(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """All declared parameters, given or defaulted, validated; unknown names refused."""
        known = {p.name: p for p in cls.parameters}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise LimitError(f"{cls.name}: unknown parameter(s) {unknown}; known: {sorted(known)}")
        return {name: p.validate(values.get(name, p.default)) for name, p in known.items()}

    @abstractmethod
    def streams(self) -> tuple[StreamSpec, ...]:
        """The data streams this run will fill (may depend on the parameters)."""

    def total(self) -> int:
        """Units of work, for progress (1 if unknown)."""
        return 1

    @property
    def cores_written(self) -> tuple[int, ...] | None:
        """The cores whose conductances this run writes, where the procedure knows them more
        exactly than its parameters say (infer: the cores its tiles are mapped onto); None:
        as the parameters say."""
        return None

    @staticmethod
    def summary_text(results: Mapping[str, Any]) -> str:
        """What a front end prints about a finished run's ``results`` ("" for nothing)."""
        return ""

    @abstractmethod
    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        """The measurement itself."""

    def cleanup(self, board: Board) -> None:
        """Leave the board safe; runs after success, abort and failure alike."""
        board.safe_state()

    def check_board(self, board: Board) -> None:
        """Refuse, before a run starts (no run file, nothing sent), what cannot run on this
        board: core ids of ``"cores"`` parameters beyond the board's cores (its geometry from
        IDENTIFY). ``LimitError`` naming the parameter; procedures add their own checks."""
        n_cores = board.geometry.n_cores
        written = self.cores_written
        if written is not None:  # the procedure knows exactly which cores it writes
            checked = {"cores written": list(written)}
        else:
            checked = {
                f"parameter {parameter.name}": list(self.params.get(parameter.name, []))
                for parameter in self.parameters
                if parameter.kind == "cores"
            }
        for what, cores in checked.items():
            beyond = [core for core in cores if core >= n_cores]
            if beyond:
                raise LimitError(
                    f"{what}: core(s) {beyond} beyond the board's "
                    f"{n_cores} cores (0-{n_cores - 1}) at {board.link.url}"
                )

    def check_stop(self) -> None:
        """A safe point: raise :class:`Aborted` if the runner asked to stop."""
        if self._should_stop():
            raise Aborted("stopped at the operator's request")

    def metadata(self, board: Board) -> dict[str, Any]:
        """Run metadata for the Start record: the board's identity and URL."""
        ident = board.identity
        return {
            "chip_id": ident.chip_id,
            "board_id": ident.board_id,
            "firmware_version": ident.firmware_version,
            "board_url": board.link.url,
            "simulated": ident.simulated,
            "n_cores": ident.n_cores,
        }

    def run(
        self,
        board: Board,
        *,
        should_stop: Callable[[], bool] | None = None,
        resume_from: dict[str, Any] | None = None,
    ) -> Iterator[Record]:
        """Start, the procedure's records, then Stop; cleanup always runs.

        Exceptions from the procedure end the run with status "failed" and are not re-raised
        (the Stop record carries the error); ``KeyboardInterrupt`` and ``GeneratorExit`` end it
        with cleanup and propagate.
        """
        self._should_stop = should_stop or (lambda: False)
        started = time.monotonic()
        yield Start(
            procedure=self.name,
            parameters=dict(self.params),
            streams=self.streams(),
            default_plot=self.default_plot,
            metadata=self.metadata(board),
            total=self.total(),
            resumed=resume_from is not None,
        )
        status: Status = "success"
        reason = ""
        try:
            yield from self.execute(board, resume_from=resume_from)
        except Aborted as exc:
            status, reason = "aborted", str(exc)
        except (DriverError, LimitError, ValueError, RuntimeError, OSError, ArithmeticError) as exc:
            # The reason goes into the Stop record and the run file; a driver or limit error
            # is the board's or the user's, not a bug: one line on the terminal.
            expected = isinstance(exc, DriverError)  # LimitError included
            if expected:
                # The traceback rides along for collectors that keep it (a sweep point's
                # details) without being printed on a terminal.
                log.error(
                    "%s failed: %s: %s",
                    self.name,
                    type(exc).__name__,
                    exc,
                    extra={"traceback_text": traceback.format_exc()},
                )
            else:
                log.exception("%s failed", self.name)
            status, reason = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            try:
                self.cleanup(board)
            except DriverError as exc:
                log.warning("%s: cleanup could not reach the board: %s", self.name, exc)
                if status == "success":
                    status, reason = "failed", f"cleanup failed: {exc}"
        yield Stop(
            status=status,
            reason=reason,
            elapsed_s=time.monotonic() - started,
            results=dict(self.results),
        )
