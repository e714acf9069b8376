"""The sweep result file: one HDF5 file per study, one row per measured (point, drift, comp).

Layout (``h5py``)::

    /            @chipctl_format="chipctl-sweep/1" @study_name @kind @study (JSON: kind,
                 settings, drift, compensation) @fingerprint (hash of @study) @created
                 @last_spec (TOML of the latest run) @software_version
    /rows/<column>     one resizable 1-D dataset per column, all the same length:
        key            point key (hash of the point's study settings and axes)
        seed mode gdp model dataset board_options     the point's axes
        drift drift_s compensation                     the row within the point
        status         "ok" | "failed"
        error          the point's error, one line ("" when ok)
        details        what the failing procedure logged (its traceback), "" when ok
        worker wall_s  where it ran (host:pid) and how long the point took, s
        <figures>      MVM_FIGURES or INFERENCE_FIGURES (NaN in failed rows)
    /summary/<column>  rewritten at the end of every run: one row per configuration
                       (mode, gdp, model, compensation, drift) over the seeds: n, mean, std,
                       p5, p50, p95 of the figure of merit; @figure @points_ok @points_failed

A point that fails is one row with status "failed", its error text and empty drift and
compensation. Rows are appended as points finish; the file is opened, appended and closed for
every point, so an interrupted or killed study keeps every point that finished before (a point
whose write was torn, its columns of unequal length, is dropped on reading and run again).

**Resume rule.** A point whose key has an "ok" row is done and is skipped by a re-run; a failed
point is run again (its failed row stays, as history; the summary uses only ok rows). The
fingerprint ties a file to one study's settings, drift times and compensations: a spec whose
fingerprint differs is refused with the differing keys named (use another ``--out``), while the
point axes (seeds, modes, gdp, models, sample) may grow: only the new points run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from chipctl.errors import ChipctlError
from chipctl.sweep.points import INFERENCE_FIGURES, MVM_FIGURES
from chipctl.sweep.spec import Point, Spec, canonical_json

FORMAT = "chipctl-sweep/1"
STRING_COLUMNS = (
    "key",
    "mode",
    "model",
    "dataset",
    "board_options",
    "drift",
    "compensation",
    "status",
    "error",
    "details",
    "worker",
)
AXIS_COLUMNS = {"seed": "i8", "gdp": "?", "drift_s": "f8", "wall_s": "f8"}


class StoreError(ChipctlError, ValueError):
    """A result file that does not belong to this study, or is not a sweep result file."""


def figure_columns(kind: str) -> tuple[str, ...]:
    """The figure columns of a study kind."""
    return MVM_FIGURES if kind == "mvm" else INFERENCE_FIGURES


def _fingerprint(study: Mapping[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(canonical_json(study).encode()).hexdigest()[:16]


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: file {a!r}, spec {b!r}")
    return found


class ResultStore:
    """Append-only rows of one study in an HDF5 file (layout in the module docstring).

    Args:
        path: the result file (created with its folder if missing).
        spec: the study; an existing file must have the same fingerprint.

    Raises:
        StoreError: the file is not a sweep result file, or holds another study.
    """

    def __init__(self, path: str | Path, spec: Spec) -> None:
        self.path = Path(path)
        self.spec = spec
        self.kind = spec.kind
        self.columns = (*STRING_COLUMNS, *AXIS_COLUMNS, *figure_columns(spec.kind))
        self.fingerprint = _fingerprint(spec.study)
        if self.path.exists():
            self._check_existing()
        else:
            self._create()

    def _check_existing(self) -> None:
        try:
            with h5py.File(self.path, "a") as f:
                if f.attrs.get("chipctl_format") != FORMAT:
                    raise StoreError(f"{self.path} is not a sweep result file ({FORMAT})")
                if f.attrs["fingerprint"] != self.fingerprint:
                    old = json.loads(f.attrs["study"])
                    changes = "; ".join(_differences(old, self.spec.study))
                    raise StoreError(
                        f"{self.path} holds study {f.attrs['study_name']!r} with other settings "
                        f"({changes}); give another --out file, or restore the spec"
                    )
                f.attrs["last_spec"] = self.spec.text
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open the result file: {exc}") from None

    def _create(self) -> None:
        from chipctl import __version__

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(self.path, "w") as f:
            f.attrs.update(
                chipctl_format=FORMAT,
                study_name=self.spec.name,
                kind=self.kind,
                study=canonical_json(self.spec.study),
                fingerprint=self.fingerprint,
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                last_spec=self.spec.text,
                software_version=__version__,
            )
            rows = f.create_group("rows")
            for name in self.columns:
                dtype = (
                    h5py.string_dtype() if name in STRING_COLUMNS else AXIS_COLUMNS.get(name, "f8")
                )
                rows.create_dataset(name, (0,), dtype=dtype, maxshape=(None,), chunks=(256,))

    def append(
        self, point: Point, rows: list[dict[str, Any]], error: str = "", details: str = ""
    ) -> None:
        """Write a finished point: its rows, or one failed row with ``error``; then close."""
        base = {
            "key": point.key,
            "seed": point.seed,
            "mode": point.mode,
            "gdp": point.gdp,
            "model": point.model,
            "dataset": point.dataset,
            "board_options": point.board_options,
        }
        if error:
            rows = [
                {
                    "status": "failed",
                    "error": error,
                    "details": details,
                    "drift": "",
                    "compensation": "",
                    "drift_s": float("nan"),
                }
            ]
        records = [{**base, "status": "ok", **row} for row in rows]
        with h5py.File(self.path, "a") as f:
            group = f["rows"]
            # Columns are written one after the other; after a torn write (killed in between)
            # the shortest column marks the last complete point, and the rest is overwritten.
            n = min(group[name].shape[0] for name in self.columns)
            for name in self.columns:
                dataset = group[name]
                dataset.resize((n + len(records),))
                default: Any = "" if name in STRING_COLUMNS else float("nan")
                if name == "seed":
                    default = -1
                values = [record.get(name, default) for record in records]
                dataset[n:] = np.array(values, dtype=object if name in STRING_COLUMNS else None)

    def rows(self) -> dict[str, np.ndarray]:
        """All rows, column by column (strings decoded)."""
        return read_rows(self.path)

    def done_keys(self) -> set[str]:
        """Keys of the points that have ok rows (a re-run skips them)."""
        rows = self.rows()
        return {k for k, s in zip(rows["key"], rows["status"], strict=True) if s == "ok"}

    def write_summary(self, table: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
        """Replace ``/summary`` with ``table`` (columns of equal length) and ``attrs``."""
        with h5py.File(self.path, "a") as f:
            if "summary" in f:
                del f["summary"]
            group = f.create_group("summary")
            for name, values in table.items():
                array = np.asarray(values)
                if array.dtype.kind in "UO":
                    group.create_dataset(name, data=array.astype(object), dtype=h5py.string_dtype())
                else:
                    group.create_dataset(name, data=array)
            group.attrs.update(dict(attrs))


def read_rows(path: str | Path) -> dict[str, np.ndarray]:
    """The ``/rows`` columns of a result file (strings as ``str`` arrays)."""
    with h5py.File(path, "r") as f:
        columns = {name: _column(dataset) for name, dataset in f["rows"].items()}
    n = min((len(values) for values in columns.values()), default=0)
    return {name: values[:n] for name, values in columns.items()}  # without a torn last write


def read_summary(path: str | Path) -> dict[str, np.ndarray]:
    """The ``/summary`` columns of a result file (empty if none was written)."""
    with h5py.File(path, "r") as f:
        if "summary" not in f:
            return {}
        return {name: _column(dataset) for name, dataset in f["summary"].items()}


def _column(dataset: h5py.Dataset) -> np.ndarray:
    if h5py.check_string_dtype(dataset.dtype) is not None:
        return dataset.asstr()[()].astype(str) if dataset.shape[0] else np.array([], str)
    return dataset[()]


def pending(points: Iterable[Point], done: set[str]) -> list[Point]:
    """The points whose key is not done."""
    return [p for p in points if p.key not in done]
