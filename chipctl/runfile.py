"""Run files: one HDF5 file per procedure run (NeXus-style), written live under SWMR.

Layout (``h5py``, ``libver="latest"``)::

    /                        NXroot   @default=entry @file_name @file_time @creator @HDF5_Version
                                      @h5py_version @chipctl_format="chipctl-run/1"
    /entry                   NXentry  @default=data @start_time @procedure @title @chip_id
                                      @board_id @firmware_version @board_url @calibration_set_id
                                      @software_version @seed @parameters (JSON) @writer_pid
                                      @writer_host @resume_count @resume_times (JSON)
    /entry/parameters        NXparameters  scalars and lists as attributes, arrays as datasets
    /entry/instrument        NXinstrument  the board identity as attributes
    /entry/streams/<name>    one resizable chunked dataset per stream, rows along axis 0
                             (maxshape (None, *row_shape)) @units @long_name
    /entry/data              NXdata @signal @axes @<axis>_indices, soft links to the streams
    /entry/run               NXcollection: bookkeeping that changes while the file is in SWMR
        status               fixed-size UTF-8 string: "running" | "success" | "aborted" | "failed"
        reason               fixed-size UTF-8 string (why it stopped; cut with a marker if long)
        end_time             fixed-size UTF-8 string, ISO 8601 ("" while running)
        elapsed_s            float64, s of the last run segment
        results              (1,) fixed-size JSON string: the procedure's results
        checkpoints          (N,) fixed-size JSON strings, gzip-compressed; one row per checkpoint
    /entry/end_time          soft link to /entry/run/end_time (NeXus field)

Everything is created first, then the file switches to SWMR (attributes can no longer be
written), and afterwards rows are only appended and flushed. Status, reason and end time
therefore live in small pre-created fixed-size datasets, never attributes: variable-length
strings live in the global heap, which SWMR does not publish safely to readers. Data are flushed
at most ``flush_interval_s`` after they were written (a background thread), before every
checkpoint row and at the end, so a killed process leaves a readable file with everything up to
the last flush, and a reader (``RunFile.open(path)``, which opens SWMR files with ``swmr=True``)
can follow it with :meth:`RunFile.refresh`.

A checkpoint row is ``{"index", "time", "state", "rows", "board_time_s"}``: the procedure's
state, the row count of every stream at that moment (all flushed before the row is written) and
the simulated board's virtual time, if it has one.

A file killed in SWMR mode cannot be reopened for writing without ``h5clear``; resuming (see
``chipctl.runner.resume_run``) therefore rewrites the run up to its last checkpoint into a fresh
file next to it and atomically replaces the original (``os.replace``) before continuing.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h5py
import numpy as np

import chipctl
from procedures.base import Checkpoint, Data, Record, Start, Stop, StreamSpec

log = logging.getLogger(__name__)

FORMAT = "chipctl-run/1"
"""Value of the root attribute that marks a chipctl run file."""

STATUS_BYTES = 16
REASON_BYTES = 4096
TIME_BYTES = 40
RESULTS_BYTES = 262144
CHECKPOINT_BYTES = 262144
"""Size limits (bytes of UTF-8) of the fixed-size bookkeeping strings."""

CHUNK_TARGET_BYTES = 256 * 1024
CHUNK_MAX_BYTES = 1024 * 1024
"""Stream chunks hold about 256 KiB (at most 1 MiB unless one row element row is larger)."""

STATUSES = ("running", "success", "aborted", "failed")


class RunFileError(Exception):
    """A run file is missing, unreadable, not a chipctl run, or cannot take a record."""


# -- helpers ----------------------------------------------------------------------------------


def now_iso() -> str:
    """The current time, ISO 8601 with the local timezone offset, to the millisecond."""
    return datetime.now(UTC).astimezone().isoformat(timespec="milliseconds")


def seed_from_url(url: str) -> int:
    """The ``seed=`` option of a ``mockchip://`` URL, else -1 (real hardware, unknown seed)."""
    parts = urlsplit(url)
    if parts.scheme != "mockchip":
        return -1
    values = parse_qs(parts.query).get("seed")
    try:
        return int(values[-1]) if values else -1
    except ValueError:
        return -1


def chunk_shape(row_shape: tuple[int, ...], dtype: str) -> tuple[int, ...]:
    """Chunk shape for a stream: whole rows along the append axis, ~256 KiB per chunk.

    A row larger than 1 MiB is split along its leading axes so a chunk stays within 1 MiB.
    """
    itemsize = np.dtype(dtype).itemsize
    row_bytes = itemsize * math.prod(row_shape)
    if row_bytes <= CHUNK_MAX_BYTES:
        return (max(1, CHUNK_TARGET_BYTES // max(row_bytes, 1)), *row_shape)
    inner = list(row_shape)
    for axis in range(len(inner)):
        while itemsize * math.prod(inner) > CHUNK_MAX_BYTES and inner[axis] > 1:
            inner[axis] = (inner[axis] + 1) // 2
    return (1, *inner)


def _fixed(text: str, size: int, what: str, *, cut: bool) -> bytes:
    data = text.encode("utf-8")
    if len(data) <= size:
        return data
    if not cut:
        raise RunFileError(f"{what} is {len(data)} bytes of JSON, above the limit of {size}")
    log.warning("%s cut to %d bytes in the run file; full text: %s", what, size, text)
    marker = f" [... {len(data)} bytes, cut; full text in the log]".encode()
    return data[: size - len(marker)].decode("utf-8", "ignore").encode() + marker


def _text(value: Any) -> str:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == (1,):
        return _text(value[0])
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _coerce(values: np.ndarray, spec: StreamSpec, rows: bool) -> np.ndarray:
    """``values`` as rows of ``spec``; refuses wrong shapes and lossy casts (no silent clipping)."""
    expected = spec.shape if not rows else values.shape[:1] + spec.shape
    if values.shape != expected:
        what = "rows" if rows else "a row"
        raise RunFileError(
            f"stream {spec.name}: {what} of shape {values.shape}, expected {expected}"
        )
    target = np.dtype(spec.dtype)
    if values.dtype == target:
        return values
    if np.can_cast(values.dtype, target, "safe"):
        return values.astype(target)
    if np.can_cast(values.dtype, target, "same_kind") or (
        values.dtype.kind in "biu" and target.kind in "iu"
    ):
        if target.kind in "iu" and values.size:
            info = np.iinfo(target)
            low, high = values.min(), values.max()
            if low < info.min or high > info.max:
                raise RunFileError(
                    f"stream {spec.name}: values {low}..{high} do not fit dtype {target}"
                )
        converted = values.astype(target)
        if target.kind == "f" and not np.array_equal(np.isfinite(converted), np.isfinite(values)):
            raise RunFileError(f"stream {spec.name}: values overflow dtype {target}")
        return converted
    raise RunFileError(f"stream {spec.name}: cannot store dtype {values.dtype} as {target}")


def _parameters_json(parameters: Mapping[str, Any]) -> str:
    encoded: dict[str, Any] = {}
    for name, value in parameters.items():
        if isinstance(value, np.ndarray):
            encoded[name] = {"array": f"parameters/{name}", "shape": list(value.shape)}
        else:
            encoded[name] = value
    return json.dumps(encoded, default=_json_default, sort_keys=True)


# -- writing ----------------------------------------------------------------------------------


@dataclass
class ResumeSource:
    """What a resumed run carries over from its file: rows up to the last checkpoint.

    Attributes:
        path: the run file being resumed.
        rows: row count per stream to keep (from the last checkpoint; 0 without one).
        checkpoints: number of checkpoint rows to keep.
    """

    path: Path
    rows: dict[str, int]
    checkpoints: int


class RunWriter:
    """Subscriber that writes one run's records into its HDF5 file.

    Call it with each record (``writer(record)``): ``Start`` creates the file (or, when
    ``resume`` is given, the continued file), ``Data`` appends rows, ``Checkpoint`` flushes and
    adds a checkpoint row, ``Stop`` ends the run. :meth:`finish` ends it without a ``Stop``
    (exception, forced interrupt).

    Args:
        path: the run file to create (parent directories are created).
        instrument: the board identity, stored under ``/entry/instrument``.
        flush_interval_s: longest time in s that written rows stay unflushed.
        board_clock: returns the board's virtual time in s at each checkpoint (simulator).
        resume: rows and checkpoints to carry over from an earlier run in ``path``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        instrument: Mapping[str, Any] | None = None,
        flush_interval_s: float = 1.0,
        board_clock: Callable[[], float] | None = None,
        resume: ResumeSource | None = None,
    ) -> None:
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        self.path = Path(path)
        self.instrument = dict(instrument or {})
        self.flush_interval_s = float(flush_interval_s)
        self.board_clock = board_clock
        self.resume = resume
        self.status = "running"
        self._file: h5py.File | None = None
        self._streams: dict[str, h5py.Dataset] = {}
        self._specs: dict[str, StreamSpec] = {}
        self._rows: dict[str, int] = {}
        self._run: h5py.Group | None = None
        self._n_checkpoints = 0
        self._lock = threading.Lock()
        self._dirty = False
        self._stop_flusher = threading.Event()
        self._flusher: threading.Thread | None = None

    # -- the subscriber ---------------------------------------------------------------------

    def __call__(self, record: Record) -> None:
        if isinstance(record, Start):
            self.start(record)
        elif isinstance(record, Data):
            self.append(record.stream, record.values, rows=record.rows)
        elif isinstance(record, Checkpoint):
            self.checkpoint(record.state)
        elif isinstance(record, Stop):
            self.finish(record.status, record.reason, results=record.results)

    @property
    def is_open(self) -> bool:
        """True between ``start`` and ``finish``/``close``."""
        return self._file is not None

    @property
    def rows(self) -> dict[str, int]:
        """Rows written per stream so far."""
        return dict(self._rows)

    def start(self, start: Start) -> None:
        """Create the file for ``start`` and switch it to SWMR."""
        if self._file is not None:
            raise RunFileError(f"{self.path}: run already started")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Built under a temporary name and renamed into place once it is a complete SWMR file
        # (the open handle follows the rename): a process killed while the layout is written
        # leaves no truncated run file, only a hidden temporary one.
        kind = "resume" if self.resume is not None else "new"
        target = self.path.with_name(f".{self.path.name}.{kind}-{os.getpid()}.tmp")
        try:
            f = h5py.File(target, "w", libver="latest")
        except OSError as exc:
            raise RunFileError(f"{target}: cannot create run file: {exc}") from exc
        try:
            self._layout(f, start)
            if self.resume is not None:
                self._carry_over(f, self.resume)
            f.swmr_mode = True
            f.flush()
        except BaseException:
            f.close()
            target.unlink(missing_ok=True)
            raise
        os.replace(target, self.path)
        self._file = f
        self._flusher = threading.Thread(
            target=self._flush_loop, name=f"flush {self.path.name}", daemon=True
        )
        self._flusher.start()

    def append(self, stream: str, values: Any, *, rows: bool = False) -> None:
        """Append one row (or, with ``rows``, several rows along axis 0) to ``stream``."""
        if stream not in self._streams:
            raise RunFileError(
                f"{self.path}: record for undeclared stream {stream!r}; "
                f"declared: {sorted(self._streams)}"
            )
        array = _coerce(np.asarray(values), self._specs[stream], rows)
        dataset = self._streams[stream]
        with self._lock:
            n = self._rows[stream]
            k = array.shape[0] if rows else 1
            dataset.resize(n + k, axis=0)
            if rows:
                dataset[n : n + k] = array
            else:
                dataset[n] = array
            self._rows[stream] = n + k
            self._dirty = True

    def checkpoint(self, state: Mapping[str, Any]) -> None:
        """Flush the data, then add and flush one checkpoint row (state + row counts)."""
        if self._file is None or self._run is None:
            raise RunFileError(f"{self.path}: checkpoint before the run started")
        board_time = self.board_clock() if self.board_clock is not None else None
        row = {
            "index": self._n_checkpoints,
            "time": now_iso(),
            "state": dict(state),
            "rows": dict(self._rows),
            "board_time_s": board_time,
        }
        text = json.dumps(row, default=_json_default, sort_keys=True)
        data = _fixed(text, CHECKPOINT_BYTES, f"{self.path}: checkpoint state", cut=False)
        with self._lock:
            self._file.flush()  # the data the checkpoint refers to, first
            dataset = self._run["checkpoints"]
            dataset.resize(self._n_checkpoints + 1, axis=0)
            dataset[self._n_checkpoints] = data
            self._n_checkpoints += 1
            self._file.flush()
            self._dirty = False

    def flush(self) -> None:
        """Publish everything written so far to readers and to disk."""
        with self._lock:
            if self._file is not None:
                self._file.flush()
                self._dirty = False

    def finish(
        self,
        status: str,
        reason: str = "",
        *,
        results: Mapping[str, Any] | None = None,
        elapsed_s: float | None = None,
    ) -> None:
        """Write the final status, reason, end time and results; flush and close the file."""
        if status not in STATUSES[1:]:
            raise ValueError(f"final status must be one of {STATUSES[1:]}, got {status!r}")
        self._stop_flusher.set()
        if self._flusher is not None:
            self._flusher.join()
        if self._file is None or self._run is None:
            return
        run = self._run
        with self._lock:
            try:
                results_text = json.dumps(results or {}, default=_json_default, sort_keys=True)
            except TypeError as exc:
                results_text = json.dumps({"error": f"results not JSON serialisable: {exc}"})
            run["results"][0] = _fixed(results_text, RESULTS_BYTES, "results", cut=True)
            run["reason"][()] = _fixed(reason, REASON_BYTES, "stop reason", cut=True)
            run["end_time"][()] = now_iso().encode()
            if elapsed_s is not None:
                run["elapsed_s"][()] = float(elapsed_s)
            run["status"][()] = status.encode()  # last: a reader seeing it sees the rest
            self._file.flush()
            self._file.close()
            self._file = None
            self.status = status

    def close(self) -> None:
        """Close without a final status if still open (the file then says "running")."""
        self._stop_flusher.set()
        if self._flusher is not None:
            self._flusher.join()
        with self._lock:
            if self._file is not None:
                self._file.flush()
                self._file.close()
                self._file = None

    # -- internals --------------------------------------------------------------------------

    def _flush_loop(self) -> None:
        while not self._stop_flusher.wait(self.flush_interval_s):
            with self._lock:
                if self._dirty and self._file is not None:
                    try:
                        self._file.flush()
                        self._dirty = False
                    except Exception:  # keep the run going; the next flush will report again
                        log.exception("%s: background flush failed", self.path)

    def _layout(self, f: h5py.File, start: Start) -> None:
        meta = start.metadata
        f.attrs.update(
            {
                "NX_class": "NXroot",
                "default": "entry",
                "file_name": self.path.name,
                "file_time": now_iso(),
                "creator": f"chipctl {chipctl.__version__}",
                "HDF5_Version": h5py.version.hdf5_version,
                "h5py_version": h5py.version.version,
                "chipctl_format": FORMAT,
            }
        )
        entry = f.create_group("entry")
        board_url = str(meta.get("board_url", ""))
        entry.attrs.update(
            {
                "NX_class": "NXentry",
                "default": "data",
                "start_time": now_iso(),
                "procedure": start.procedure,
                "title": str(meta.get("title", "")) or start.procedure,
                "chip_id": str(meta.get("chip_id", "")),
                "board_id": str(meta.get("board_id", "")),
                "firmware_version": str(meta.get("firmware_version", "")),
                "board_url": board_url,
                "calibration_set_id": str(meta.get("calibration_set_id", "")),
                "software_version": chipctl.__version__,
                "seed": seed_from_url(board_url),
                "parameters": _parameters_json(start.parameters),
                "writer_pid": os.getpid(),
                "writer_host": socket.gethostname(),
                "resume_count": 0,
                "resume_times": "[]",
            }
        )
        for key in ("simulated", "n_cores"):
            if key in meta:
                entry.attrs[key] = meta[key]

        params = entry.create_group("parameters")
        params.attrs["NX_class"] = "NXparameters"
        for name, value in start.parameters.items():
            if isinstance(value, np.ndarray):
                params.create_dataset(name, data=value)
            elif isinstance(value, list | tuple) and not value:
                params.attrs[name] = np.zeros(0, np.int64)
            else:
                params.attrs[name] = value

        instrument = entry.create_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        for key, value in self.instrument.items():
            instrument.attrs[key] = value

        streams = entry.create_group("streams", track_order=True)
        streams.attrs["NX_class"] = "NXcollection"
        for spec in start.streams:
            if not spec.name.isidentifier():
                raise RunFileError(f"stream name {spec.name!r} is not an identifier")
            dataset = streams.create_dataset(
                spec.name,
                shape=(0, *spec.shape),
                maxshape=(None, *spec.shape),
                dtype=np.dtype(spec.dtype),
                chunks=chunk_shape(spec.shape, spec.dtype),
            )
            dataset.attrs["units"] = spec.units
            dataset.attrs["long_name"] = spec.description or spec.name
            self._streams[spec.name] = dataset
            self._specs[spec.name] = spec
            self._rows[spec.name] = 0

        self._default_plot(entry, start)

        run = entry.create_group("run")
        run.attrs["NX_class"] = "NXcollection"
        run.create_dataset(
            "status", data=b"running", dtype=h5py.string_dtype("utf-8", STATUS_BYTES)
        )
        run.create_dataset("reason", data=b"", dtype=h5py.string_dtype("utf-8", REASON_BYTES))
        run.create_dataset("end_time", data=b"", dtype=h5py.string_dtype("utf-8", TIME_BYTES))
        run.create_dataset("elapsed_s", data=float("nan"), dtype="f8").attrs["units"] = "s"
        run.create_dataset(
            "results",
            data=[b"{}"],
            maxshape=(1,),
            chunks=(1,),
            compression="gzip",
            dtype=h5py.string_dtype("utf-8", RESULTS_BYTES),
        )
        run.create_dataset(
            "checkpoints",
            shape=(0,),
            maxshape=(None,),
            chunks=(1,),  # one checkpoint per chunk: rows are large and mostly padding (gzip)
            compression="gzip",
            compression_opts=1,
            dtype=h5py.string_dtype("utf-8", CHECKPOINT_BYTES),
        )
        entry["end_time"] = h5py.SoftLink("/entry/run/end_time")
        self._run = run

    def _default_plot(self, entry: h5py.Group, start: Start) -> None:
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        names = [s.name for s in start.streams]
        signal, axis = start.default_plot
        if signal not in names:
            scalars = [s.name for s in start.streams if s.shape == ()]
            signal = (scalars or names or [""])[0]
        if axis not in names or axis == signal:
            axis = None
        if not signal:
            return
        data.attrs["signal"] = signal
        data[signal] = h5py.SoftLink(f"/entry/streams/{signal}")
        ndim = 1 + len(self._specs[signal].shape)
        data.attrs["axes"] = [axis or "."] + ["."] * (ndim - 1)
        if axis is not None:
            data[axis] = h5py.SoftLink(f"/entry/streams/{axis}")
            data.attrs[f"{axis}_indices"] = 0

    def _carry_over(self, f: h5py.File, resume: ResumeSource) -> None:
        """Copy the earlier run's rows (up to its checkpoint) into the new file ``f``."""
        with open_hdf5(resume.path) as old:
            old_entry = old["entry"]
            entry = f["entry"]
            times = json.loads(_text(old_entry.attrs.get("resume_times", "[]")))
            entry.attrs["start_time"] = old_entry.attrs["start_time"]
            entry.attrs["resume_count"] = len(times) + 1
            entry.attrs["resume_times"] = json.dumps([*times, now_iso()])
            for name, n in resume.rows.items():
                if name not in self._streams:
                    raise RunFileError(f"{resume.path}: stream {name!r} is not declared any more")
                source = old_entry["streams"][name]
                target = self._streams[name]
                if source.shape[1:] != target.shape[1:] or source.dtype != target.dtype:
                    raise RunFileError(
                        f"{resume.path}: stream {name} has rows {source.shape[1:]} "
                        f"{source.dtype}, the procedure now declares {target.shape[1:]} "
                        f"{target.dtype}"
                    )
                if source.shape[0] < n:
                    raise RunFileError(
                        f"{resume.path}: stream {name} has {source.shape[0]} rows, "
                        f"its checkpoint says {n}"
                    )
                target.resize(n, axis=0)
                step = max(1, target.chunks[0]) * 8
                for first in range(0, n, step):
                    last = min(n, first + step)
                    target[first:last] = source[first:last]
                self._rows[name] = n
            if resume.checkpoints:
                old_rows = old_entry["run"]["checkpoints"][: resume.checkpoints]
                checkpoints = entry["run"]["checkpoints"]
                checkpoints.resize(resume.checkpoints, axis=0)
                checkpoints[:] = old_rows
                self._n_checkpoints = resume.checkpoints


# -- reading ----------------------------------------------------------------------------------


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
            if _text(self.file.attrs.get("chipctl_format", "")) != FORMAT:
                raise RunFileError(
                    f"{self.path}: an HDF5 file but not a chipctl run "
                    f"(no chipctl_format={FORMAT!r} root attribute)"
                )
            self._entry = self.file["entry"]
            for name in ("streams", "run", "parameters"):
                self._entry[name]
        except RunFileError:
            self.file.close()
            raise
        except (OSError, KeyError, RuntimeError, ValueError) as exc:
            self.file.close()
            raise RunFileError(f"{self.path}: damaged run file: {exc}") from exc

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
        except (OSError, KeyError, RuntimeError, ValueError) as exc:
            raise RunFileError(f"{self.path}: cannot read {what}: {exc}") from exc

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
                out[key] = _text(value) if isinstance(value, bytes | str) else value
            out["parameters"] = self.parameters
            out["resume_times"] = json.loads(str(out.get("resume_times", "[]")))
            out["status"] = self.status
            out["reason"] = self.reason
            out["end_time"] = self.end_time
            return out

        result: dict[str, Any] = self._guard("metadata", _read)
        return result

    @property
    def procedure(self) -> str:
        """Name of the procedure that wrote the run (``/entry@procedure``)."""
        return str(self._guard("procedure", lambda: _text(self._entry.attrs["procedure"])))

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

        def _read() -> dict[str, Any]:
            values: dict[str, Any] = json.loads(_text(self._entry.attrs["parameters"]))
            for name, value in values.items():
                if isinstance(value, dict) and "array" in value:
                    values[name] = np.asarray(self._entry[value["array"]][()])
            return values

        result: dict[str, Any] = self._guard("parameters", _read)
        return result

    def _run_text(self, name: str) -> str:
        return str(self._guard(name, lambda: _text(self._entry["run"][name][()])))

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
        return str(self._guard("start_time", lambda: _text(self._entry.attrs["start_time"])))

    @property
    def elapsed_s(self) -> float:
        """Wall time in s of the last run segment; NaN while running."""
        return float(self._guard("elapsed_s", lambda: self._entry["run"]["elapsed_s"][()]))

    @property
    def results(self) -> dict[str, Any]:
        """The procedure's results (``/entry/run/results``, JSON); ``{}`` until it ends."""
        result: dict[str, Any] = json.loads(
            self._guard("results", lambda: _text(self._entry["run"]["results"][0]))
        )
        return result

    @property
    def checkpoints(self) -> list[dict[str, Any]]:
        """All checkpoint rows, oldest first."""
        rows = self._guard("checkpoints", lambda: self._entry["run"]["checkpoints"][()])
        return [json.loads(_text(row)) for row in rows]

    @property
    def default_plot(self) -> tuple[str, str | None]:
        """(signal stream, axis stream or None) of ``/entry/data``."""

        def _read() -> tuple[str, str | None]:
            attrs = self._entry["data"].attrs
            signal = _text(attrs.get("signal", ""))
            axes = [_text(a) for a in np.atleast_1d(attrs.get("axes", ["."]))]
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
                        units=_text(d.attrs.get("units", "")),
                        description=_text(d.attrs.get("long_name", "")),
                    )
                )
            return out

        result: list[StreamInfo] = self._guard("streams", _read)
        return result

    def rows(self) -> dict[str, int]:
        """Rows per stream (call :meth:`refresh` first to see new ones)."""
        return {s.name: s.rows for s in self.stream_info()}

    def _dataset(self, name: str) -> h5py.Dataset:
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
            self._guard(f"units of {name}", lambda: _text(self._dataset(name).attrs["units"]))
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
