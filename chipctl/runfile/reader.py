"""Reading a run file: :class:`RunFile` (metadata, parameters, streams, checkpoints), also live.

``RunFile.open(path)`` recognises a chipctl run by its ``chipctl_format`` root attribute and
opens a file still (or last) being written in SWMR mode with ``swmr=True``, so the TUI and
``chipctl show`` can follow a run with :meth:`RunFile.refresh` / :meth:`RunFile.follow`. Every
problem, from a missing file to a damaged dataset, is a
:class:`~chipctl.runfile.format.RunFileError` naming the file.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import h5py
import numpy as np

from chipctl.runfile.format import FORMAT, STATUSES, RunFileError, decode_text

REQUIRED_ENTRY_ATTRS = ("procedure", "start_time", "parameters", "chip_id", "board_url")
"""``/entry`` attributes without which a run cannot be interpreted or resumed."""
TEXT_ENTRY_ATTRS = (
    *REQUIRED_ENTRY_ATTRS,
    *("title", "board_id", "firmware_version", "calibration_set_id", "software_version"),
    *("writer_host", "resume_times"),
)
"""``/entry`` attributes that hold text, when present."""
INT_ENTRY_ATTRS = ("seed", "writer_pid", "resume_count", "n_cores")
"""``/entry`` attributes that hold an integer, when present."""
RUN_TEXT_DATASETS = ("status", "reason", "end_time")
"""Scalar text datasets of ``/entry/run``."""
STREAM_KINDS = "biuf"
"""numpy dtype kinds a stream may have: bool, signed and unsigned integers, floats."""

_READ_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError)
"""What h5py, json and numpy raise on a damaged file (all reported as a RunFileError)."""


def open_hdf5(path: str | os.PathLike[str], *, live: bool = False) -> h5py.File:
    """Open ``path`` read-only; a file still (or last) being written in SWMR mode with swmr=True.

    Raises :class:`RunFileError` naming the file if it is missing, not HDF5, or damaged.
    """
    path = Path(path)
    if not path.exists():
        raise RunFileError(f"{path}: no such run file")
    if path.is_dir():
        raise RunFileError(f"{path}: is a directory, not a run file")
    try:
        hdf5 = h5py.is_hdf5(path)
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read: {exc}") from exc
    if not hdf5:
        raise RunFileError(f"{path}: not an HDF5 file")
    if not live:
        try:
            return h5py.File(path, "r")
        except OSError as exc:
            if "already open for write" not in str(exc):
                raise RunFileError(f"{path}: truncated or damaged HDF5 file: {exc}") from exc
    try:
        return h5py.File(path, "r", swmr=True)
    except OSError as exc:
        raise RunFileError(f"{path}: truncated or damaged HDF5 file: {exc}") from exc


@dataclass(frozen=True)
class StreamInfo:
    """A stream as stored: name, rows so far, row shape, dtype, units and description."""

    name: str
    rows: int
    shape: tuple[int, ...]
    dtype: str
    units: str
    description: str


@dataclass
class RunFile:
    """Read a run file, also while it is being written (call :meth:`refresh` to follow).

    Use ``RunFile.open(path)`` (a context manager). Every error is a :class:`RunFileError`
    naming the file.
    """

    path: Path
    file: h5py.File
    _entry: h5py.Group = field(init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            if decode_text(self.file.attrs.get("chipctl_format", "")) != FORMAT:
                raise RunFileError(
                    f"{self.path}: an HDF5 file but not a chipctl run "
                    f"(no chipctl_format={FORMAT!r} root attribute)"
                )
            entry = self.file.get("entry")
            if not isinstance(entry, h5py.Group):
                self._damaged("group /entry is missing")
            self._entry = entry
            self._check_layout()
        except RunFileError:
            self.file.close()
            raise
        except _READ_ERRORS as exc:
            self.file.close()
            raise RunFileError(f"{self.path}: damaged run file: {exc}") from exc

    def _damaged(self, what: str) -> NoReturn:
        raise RunFileError(f"{self.path}: damaged run file: {what}")

    def _json(self, value: Any, what: str) -> Any:
        """A JSON attribute or dataset value, decoded; damaged if it is not JSON."""
        try:
            return json.loads(decode_text(value))
        except ValueError as exc:
            self._damaged(f"{what} is not valid JSON ({exc})")

    def _check_layout(self) -> None:
        """Check what every reader relies on, so a damaged file fails here, naming the damage.

        Groups, the metadata attributes and their types, the parameters JSON, the bookkeeping
        datasets of ``/entry/run``, every stream (a numeric dataset with a row axis), the
        streams ``/entry/data`` names, and the streams and rows the last checkpoint records.
        """
        entry = self._entry
        for name in ("streams", "run", "parameters"):
            if not isinstance(entry.get(name), h5py.Group):
                self._damaged(f"group /entry/{name} is missing")
        attrs = entry.attrs
        for key in REQUIRED_ENTRY_ATTRS:
            if key not in attrs:
                self._damaged(f"metadata attribute /entry@{key} is missing")
        for key in TEXT_ENTRY_ATTRS:
            if key in attrs and not isinstance(attrs[key], str | bytes | np.bytes_):
                self._damaged(f"metadata attribute /entry@{key} is not text")
        for key in INT_ENTRY_ATTRS:
            if key in attrs:
                value = attrs[key]
                if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
                    self._damaged(f"metadata attribute /entry@{key} is not an integer: {value!r}")
        self._decode_parameters(load_arrays=False)
        if "resume_times" in attrs:
            times = self._json(attrs["resume_times"], "metadata attribute /entry@resume_times")
            if not isinstance(times, list):
                self._damaged("metadata attribute /entry@resume_times is not a JSON list")
        run = entry["run"]
        for name in RUN_TEXT_DATASETS:
            dataset = run.get(name)
            if not isinstance(dataset, h5py.Dataset):
                self._damaged(f"dataset /entry/run/{name} is missing")
            if dataset.dtype.kind not in "SOU":
                self._damaged(f"dataset /entry/run/{name} holds {dataset.dtype}, not text")
            if dataset.shape != ():
                self._damaged(f"dataset /entry/run/{name} has shape {dataset.shape}, not ()")
        status = decode_text(run["status"][()])
        if status not in STATUSES:
            self._damaged(f"/entry/run/status is {status!r}, not one of {list(STATUSES)}")
        for name, kind in (("results", "text"), ("checkpoints", "text"), ("elapsed_s", "number")):
            dataset = run.get(name)
            if not isinstance(dataset, h5py.Dataset):
                self._damaged(f"dataset /entry/run/{name} is missing")
            if (dataset.dtype.kind in "SOU") != (kind == "text"):
                self._damaged(f"dataset /entry/run/{name} holds {dataset.dtype}, not {kind}")
        self._decode_results()
        streams = entry["streams"]
        for name in streams:
            dataset = streams.get(name)
            if not isinstance(dataset, h5py.Dataset):
                self._damaged(f"stream {name}: /entry/streams/{name} is not a dataset")
            if dataset.ndim < 1:
                self._damaged(f"stream {name}: a scalar dataset, not rows")
            if dataset.dtype.kind not in STREAM_KINDS:
                self._damaged(f"stream {name}: dtype {dataset.dtype} is not numeric")
        data = entry.get("data")
        if not isinstance(data, h5py.Group):
            self._damaged("group /entry/data (the default plot) is missing")
        named = [decode_text(data.attrs.get("signal", ""))]
        named += [decode_text(a) for a in np.atleast_1d(data.attrs.get("axes", []))]
        for name in named:
            if name not in ("", ".") and name not in streams:
                self._damaged(f"stream {name} (named by /entry/data) is missing")
        checkpoints = run["checkpoints"]
        if checkpoints.shape and checkpoints.shape[0]:
            last = self._checkpoint(checkpoints[-1], checkpoints.shape[0] - 1)
            for name, rows in last["rows"].items():
                if name not in streams:
                    self._damaged(f"stream {name} (recorded by the last checkpoint) is missing")
                if streams[name].shape[0] < rows:
                    self._damaged(
                        f"stream {name} has {streams[name].shape[0]} rows, "
                        f"its last checkpoint recorded {rows}"
                    )

    def _decode_parameters(self, *, load_arrays: bool = True) -> dict[str, Any]:
        """The parameters JSON, array parameters read from their datasets (or only checked)."""
        values = self._json(self._entry.attrs["parameters"], "metadata attribute /entry@parameters")
        if not isinstance(values, dict):
            self._damaged("metadata attribute /entry@parameters is not a JSON object")
        for name, value in values.items():
            if isinstance(value, dict) and "array" in value:
                where = f"/entry/{value['array']}"
                dataset = self._entry.get(str(value["array"]))
                if not isinstance(dataset, h5py.Dataset):
                    self._damaged(f"array of parameter {name} ({where}) is missing")
                if dataset.dtype.kind not in STREAM_KINDS:
                    self._damaged(f"array of parameter {name} ({where}) holds {dataset.dtype}")
                if load_arrays:
                    values[name] = np.asarray(dataset[()])
        return values

    def _checkpoint(self, row: Any, index: int) -> dict[str, Any]:
        value = self._json(row, f"checkpoint {index}")
        rows = value.get("rows") if isinstance(value, dict) else None
        state = value.get("state") if isinstance(value, dict) else None
        if (
            not isinstance(rows, dict)
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in rows.values())
            or not (state is None or isinstance(state, dict))
            or not isinstance(value.get("time", ""), str)
        ):
            self._damaged(f"checkpoint {index} is not a checkpoint record")
        return value

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, live: bool = False) -> RunFile:
        """Open ``path``; ``live`` forces SWMR read mode, to follow a file still being written."""
        return cls(Path(path), open_hdf5(path, live=live))

    def __enter__(self) -> RunFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HDF5 file (also done on leaving the ``with`` block)."""
        self.file.close()

    @property
    def live(self) -> bool:
        """True if opened in SWMR read mode (``refresh`` then shows new rows)."""
        return bool(self.file.swmr_mode)

    def _guard(self, what: str, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except RunFileError:
            raise
        except _READ_ERRORS as exc:
            raise RunFileError(f"{self.path}: damaged run file: cannot read {what}: {exc}") from exc

    def refresh(self) -> None:
        """Pick up rows and status written since the last look (SWMR files)."""
        if not self.live:
            return

        def _refresh() -> None:
            for dataset in self._entry["streams"].values():
                dataset.refresh()
            for dataset in self._entry["run"].values():
                dataset.refresh()

        self._guard("new rows", _refresh)

    # -- metadata ---------------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        """The ``/entry`` attributes (parameters decoded from JSON) plus status and end time."""

        def _read() -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, value in self._entry.attrs.items():
                if key == "NX_class":
                    continue
                if isinstance(value, np.generic):
                    value = value.item()
                out[key] = decode_text(value) if isinstance(value, bytes | str) else value
            out["parameters"] = self.parameters
            out["resume_times"] = self._json(
                out.get("resume_times", "[]"), "metadata attribute /entry@resume_times"
            )
            out["status"] = self.status
            out["reason"] = self.reason
            out["end_time"] = self.end_time
            return out

        result: dict[str, Any] = self._guard("metadata", _read)
        return result

    @property
    def procedure(self) -> str:
        """Name of the procedure that wrote the run (``/entry@procedure``)."""
        return str(self._guard("procedure", lambda: decode_text(self._entry.attrs["procedure"])))

    @property
    def instrument(self) -> dict[str, Any]:
        """The board identity stored with the run."""

        def _read() -> dict[str, Any]:
            attrs = self._entry["instrument"].attrs
            return {
                k: (v.item() if isinstance(v, np.generic) else v)
                for k, v in attrs.items()
                if k != "NX_class"
            }

        result: dict[str, Any] = self._guard("instrument", _read)
        return result

    @property
    def parameters(self) -> dict[str, Any]:
        """Parameter values as validated for the run; array parameters as numpy arrays."""

        result: dict[str, Any] = self._guard("parameters", self._decode_parameters)
        return result

    def _run_text(self, name: str) -> str:
        return str(self._guard(name, lambda: decode_text(self._entry["run"][name][()])))

    @property
    def status(self) -> str:
        """``running`` (still writing, or the writer died), ``success``, ``aborted``, ``failed``."""
        return self._run_text("status")

    @property
    def reason(self) -> str:
        """Why the run stopped (``/entry/run/reason``); empty on success."""
        return self._run_text("reason")

    @property
    def end_time(self) -> str:
        """ISO 8601 end time (``/entry/run/end_time``); empty while running."""
        return self._run_text("end_time")

    @property
    def start_time(self) -> str:
        """ISO 8601 start time (``/entry@start_time``)."""
        return str(self._guard("start_time", lambda: decode_text(self._entry.attrs["start_time"])))

    @property
    def elapsed_s(self) -> float:
        """Wall time in s of the last run segment; NaN while running."""
        return float(self._guard("elapsed_s", lambda: self._entry["run"]["elapsed_s"][()]))

    @property
    def results(self) -> dict[str, Any]:
        """The procedure's results (``/entry/run/results``, JSON); ``{}`` until it ends."""

        result: dict[str, Any] = self._guard("results", self._decode_results)
        return result

    def _decode_results(self) -> dict[str, Any]:
        results = self._entry["run"]["results"]
        if results.shape != (1,):
            self._damaged(f"/entry/run/results has shape {results.shape}, not (1,)")
        value = self._json(results[0], "/entry/run/results")
        if not isinstance(value, dict):
            self._damaged("/entry/run/results is not a JSON object")
        return value

    @property
    def checkpoints(self) -> list[dict[str, Any]]:
        """All checkpoint rows, oldest first."""
        rows = self._guard("checkpoints", lambda: self._entry["run"]["checkpoints"][()])
        return [
            self._guard(f"checkpoint {index}", functools.partial(self._checkpoint, row, index))
            for index, row in enumerate(rows)
        ]

    @property
    def default_plot(self) -> tuple[str, str | None]:
        """(signal stream, axis stream or None) of ``/entry/data``."""

        def _read() -> tuple[str, str | None]:
            attrs = self._entry["data"].attrs
            signal = decode_text(attrs.get("signal", ""))
            axes = [decode_text(a) for a in np.atleast_1d(attrs.get("axes", ["."]))]
            axis = axes[0] if axes and axes[0] != "." else None
            return signal, axis

        result: tuple[str, str | None] = self._guard("default plot", _read)
        return result

    # -- streams ----------------------------------------------------------------------------

    @property
    def streams(self) -> list[str]:
        """Stream names, in file order."""
        return list(self._guard("streams", lambda: list(self._entry["streams"])))

    def stream_info(self) -> list[StreamInfo]:
        """Name, rows so far, row shape, dtype, units and description of every stream."""

        def _read() -> list[StreamInfo]:
            out = []
            for name, d in self._entry["streams"].items():
                out.append(
                    StreamInfo(
                        name=name,
                        rows=int(d.shape[0]),
                        shape=tuple(d.shape[1:]),
                        dtype=str(d.dtype),
                        units=decode_text(d.attrs.get("units", "")),
                        description=decode_text(d.attrs.get("long_name", "")),
                    )
                )
            return out

        result: list[StreamInfo] = self._guard("streams", _read)
        return result

    def rows(self) -> dict[str, int]:
        """Rows per stream (call :meth:`refresh` first to see new ones)."""
        return {s.name: s.rows for s in self.stream_info()}

    def _dataset(self, name: str) -> h5py.Dataset:
        """The dataset of stream ``name`` (checked when the file was opened)."""
        streams = self._entry["streams"]
        if name not in streams:
            raise RunFileError(f"{self.path}: no stream {name!r}; streams: {list(streams)}")
        return streams[name]

    def stream(self, name: str) -> np.ndarray:
        """All rows of stream ``name`` (axis 0 = row)."""
        return np.asarray(self._guard(f"stream {name}", lambda: self._dataset(name)[()]))

    def units(self, name: str) -> str:
        """The units attribute of stream ``name``."""
        return str(
            self._guard(f"units of {name}", lambda: decode_text(self._dataset(name).attrs["units"]))
        )

    def read_stream(self, name: str) -> tuple[np.ndarray, str]:
        """(all rows, units) of stream ``name``."""
        return self.stream(name), self.units(name)

    def last_row(self, name: str) -> np.ndarray | None:
        """The last row of ``name``, or None if it has no rows yet."""

        def _read() -> np.ndarray | None:
            dataset = self._dataset(name)
            return np.asarray(dataset[-1]) if dataset.shape[0] else None

        result: np.ndarray | None = self._guard(f"stream {name}", _read)
        return result

    def follow(
        self, *, interval_s: float = 0.5, timeout_s: float | None = None
    ) -> Iterator[dict[str, int]]:
        """Yield the row counts whenever they change, until the run ends (or ``timeout_s``)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last: dict[str, int] | None = None
        while True:
            self.refresh()
            rows = self.rows()
            if rows != last:
                last = rows
                yield rows
            if self.status != "running":
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(interval_s)
