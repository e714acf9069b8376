"""Writing a run file: :class:`RunWriter`, the runner's subscriber that creates and appends.

Everything is created first, then the file switches to SWMR (attributes can no longer be
written), and afterwards rows are only appended and flushed. Data are flushed at most
``flush_interval_s`` after they were written (a background thread), before every checkpoint
row and at the end, so a killed process leaves a readable file with everything up to the last
flush, and a reader (:meth:`chipctl.runfile.reader.RunFile.open`, which opens SWMR files with
``swmr=True``) can follow it with :meth:`~chipctl.runfile.reader.RunFile.refresh`. The layout
itself is described in :mod:`chipctl.runfile.format`.

The file is built under a hidden temporary name and put in place when complete. A new run
never replaces what is at its path unless told to overwrite, and then never a file a live
writer holds nor anything but a regular file (:mod:`chipctl.runfile.paths`); without overwrite
the file is created exclusively (a hard link that fails if the name was taken meanwhile).

A file killed in SWMR mode cannot be reopened for writing without ``h5clear``; resuming (see
``chipctl.resume.resume_run``) therefore rewrites the run up to its last checkpoint into a fresh
file next to it (:class:`ResumeSource`) and atomically replaces the original (``os.replace``)
before continuing.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import chipctl
from chipctl.runfile.format import (
    CHECKPOINT_BYTES,
    FORMAT,
    REASON_BYTES,
    RESULTS_BYTES,
    STATUS_BYTES,
    STATUSES,
    TIME_BYTES,
    RunFileError,
    chunk_shape,
    coerce_values,
    decode_text,
    fixed_bytes,
    json_default,
    now_iso,
    parameters_json,
    seed_from_url,
)
from chipctl.runfile.paths import RunFileExistsError, check_out, claim, hold, release
from chipctl.runfile.reader import open_hdf5
from procedures.base import Checkpoint, Data, Record, Start, Stop, StreamSpec

log = logging.getLogger(__name__)


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
        overwrite: a new run may replace an existing file at ``path`` (never one another
            writer holds, nor anything but a regular file).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        instrument: Mapping[str, Any] | None = None,
        flush_interval_s: float = 1.0,
        board_clock: Callable[[], float] | None = None,
        resume: ResumeSource | None = None,
        overwrite: bool = False,
    ) -> None:
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        self.path = Path(path)
        self.instrument = dict(instrument or {})
        self.flush_interval_s = float(flush_interval_s)
        self.board_clock = board_clock
        self.resume = resume
        self.overwrite = bool(overwrite)
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
        """Create the file for ``start`` and switch it to SWMR.

        A new run never replaces what is at ``path`` unless ``overwrite`` (and even then never
        a file another writer holds, nor anything but a regular file): see
        :func:`chipctl.runfile.paths.check_out`; :class:`RunFileExistsError` if refused.
        """
        if self._file is not None:
            raise RunFileError(f"{self.path}: run already started")
        if self.resume is None:
            claim(self.path, overwrite=self.overwrite)
        else:
            hold(self.path)  # the resumed run's own file, checked by plan_resume
        try:
            self._create(start)
        except BaseException:
            release(self.path)
            raise
        self._flusher = threading.Thread(
            target=self._flush_loop, name=f"flush {self.path.name}", daemon=True
        )
        self._flusher.start()

    def _create(self, start: Start) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFileError(f"{self.path.parent}: cannot create the folder: {exc}") from exc
        # Built under a temporary name and put into place once it is a complete SWMR file
        # (the open handle follows the rename): a process killed while the layout is written
        # leaves no truncated run file, only a hidden temporary one.
        kind = "resume" if self.resume is not None else "new"
        unique = f"{os.getpid()}-{secrets.token_hex(3)}"
        target = self.path.with_name(f".{self.path.name}.{kind}-{unique}.tmp")
        try:
            f = h5py.File(target, "w", libver="latest")
        except OSError as exc:
            target.unlink(missing_ok=True)
            raise RunFileError(f"{target}: cannot create run file: {exc}") from exc
        try:
            self._layout(f, start)
            if self.resume is not None:
                self._carry_over(f, self.resume)
            f.swmr_mode = True
            f.flush()
            self._place(target)
        except BaseException:
            f.close()
            target.unlink(missing_ok=True)
            raise
        self._file = f

    def _place(self, target: Path) -> None:
        """Give the finished temporary file ``target`` its name ``path``: the resumed run's own
        file and an allowed overwrite are replaced atomically; a new file is created
        exclusively (a hard link fails if the name was taken since the check)."""
        if self.resume is not None:
            os.replace(target, self.path)
            return
        check_out(self.path, overwrite=self.overwrite, mine=True)  # the last look
        if self.overwrite:
            os.replace(target, self.path)
            return
        try:
            os.link(target, self.path)
        except FileExistsError:
            check_out(self.path, mine=True)  # says what appeared there
            raise RunFileExistsError(
                f"{self.path} exists; give --overwrite to replace it"
            ) from None
        except OSError:  # no hard links on this file system: the check above has to do
            os.replace(target, self.path)
            return
        target.unlink()

    def append(self, stream: str, values: Any, *, rows: bool = False) -> None:
        """Append one row (or, with ``rows``, several rows along axis 0) to ``stream``."""
        if stream not in self._streams:
            raise RunFileError(
                f"{self.path}: record for undeclared stream {stream!r}; "
                f"declared: {sorted(self._streams)}"
            )
        array = coerce_values(np.asarray(values), self._specs[stream], rows)
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
        text = json.dumps(row, default=json_default, sort_keys=True)
        data = fixed_bytes(text, CHECKPOINT_BYTES, f"{self.path}: checkpoint state", cut=False)
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
                results_text = json.dumps(results or {}, default=json_default, sort_keys=True)
            except TypeError as exc:
                results_text = json.dumps({"error": f"results not JSON serialisable: {exc}"})
            run["results"][0] = fixed_bytes(results_text, RESULTS_BYTES, "results", cut=True)
            run["reason"][()] = fixed_bytes(reason, REASON_BYTES, "stop reason", cut=True)
            run["end_time"][()] = now_iso().encode()
            if elapsed_s is not None:
                run["elapsed_s"][()] = float(elapsed_s)
            run["status"][()] = status.encode()  # last: a reader seeing it sees the rest
            self._file.flush()
            self._file.close()
            self._file = None
            self.status = status
        release(self.path)

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
                release(self.path)

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
                "parameters": parameters_json(start.parameters),
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
            times = json.loads(decode_text(old_entry.attrs.get("resume_times", "[]")))
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
