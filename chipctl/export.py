"""Export a run file for other tools: CSV (one file per stream) and NetCDF (via xarray).

CSV (:func:`export_csv`), one ``<stream>.csv`` per stream in the target folder, comma-separated,
UTF-8, a header line naming every column with its units in brackets:

* streams with scalar or 1-D rows are *wide*: one line per row, columns ``row``, then
  ``<stream> [units]`` (scalar) or ``<stream>[0] [units]``, ``<stream>[1] [units]``, ... (1-D);
* streams with 2-D or larger rows are *long* (tidy): one line per element, columns ``row``, the
  element's indices ``i1``, ``i2``, ... and ``<stream> [units]``.

A ``run.json`` next to them holds the run's metadata, parameters (arrays as nested lists) and
results, and the units of every stream.

NetCDF (:func:`export_netcdf`): the :func:`chipctl.analysis.to_xarray` dataset written with
``Dataset.to_netcdf``. The default engine is scipy (NetCDF 3, no extra C library); NetCDF 3 has no
64-bit integers, so an int64 stream whose values do not fit int32 is written as float64 (its
``note`` attribute says so).

Neither replaces what is there unless told (``overwrite``), and never the run file read, any
other run file, or anything that is not a regular file
(:func:`chipctl.runfile.paths.write_output`); each file is written under a temporary name and
renamed into place.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from chipctl.analysis import RunData, _json_default, read_run, to_xarray
from chipctl.runfile import RunFileError
from chipctl.runfile.paths import RunFileExistsError, check_out, write_output

__all__ = ["export_csv", "export_netcdf"]

_INT32 = np.iinfo(np.int32)


def _cell(value: Any) -> str:
    if isinstance(value, np.floating | float):
        return repr(float(value))
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def _write_stream(path: Path, name: str, values: np.ndarray, units: str) -> None:
    unit = units or "1"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if values.ndim <= 2:
            if values.ndim == 1:
                writer.writerow(["row", f"{name} [{unit}]"])
                for row, value in enumerate(values):
                    writer.writerow([row, _cell(value)])
            else:
                writer.writerow(["row", *(f"{name}[{k}] [{unit}]" for k in range(values.shape[1]))])
                for row, line in enumerate(values):
                    writer.writerow([row, *(_cell(v) for v in line)])
            return
        inner = values.shape[1:]
        writer.writerow(["row", *(f"i{k}" for k in range(1, len(inner) + 1)), f"{name} [{unit}]"])
        index = np.indices(inner).reshape(len(inner), -1).T
        for row, block in enumerate(values):
            flat = block.reshape(-1)
            for position, value in zip(index, flat, strict=True):
                writer.writerow([row, *position.tolist(), _cell(value)])


def export_csv(
    run: RunData | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> list[Path]:
    """Write every stream of ``run`` as ``<out_dir>/<stream>.csv`` plus ``run.json``.

    Args:
        run: a :class:`~chipctl.analysis.RunData` or the path of a run file.
        out_dir: the folder to write into (created if needed).
        overwrite: replace files of these names that are already in ``out_dir``; without it
            any such file refuses the whole export (all of them named), nothing written.

    Returns:
        The files written, the CSV files in stream order and ``run.json`` last.

    Raises:
        RunFileExistsError: a file it would write exists (without ``overwrite``), or is the
            run file itself, another run file, or not a regular file (always).
        RunFileError: the run file cannot be read, or ``out_dir`` cannot be written.
    """
    data = run if isinstance(run, RunData) else read_run(run)
    folder = Path(out_dir)
    targets = [folder / f"{name}.csv" for name in data.streams] + [folder / "run.json"]
    present = [path for path in targets if os.path.lexists(path)]
    for path in present:  # the run itself, run files, non-files: refused even with overwrite
        check_out(path, overwrite=True, source=data.path, keep_runs=True, writing="a CSV export")
    if present and not overwrite:
        names = ", ".join(path.name for path in present)
        raise RunFileExistsError(
            f"{folder} already holds {names}; give --overwrite to replace them"
        )

    def put(path: Path, write: Any) -> None:
        write_output(path, write, overwrite=overwrite, source=data.path, writing="a CSV export")

    try:
        written: list[Path] = []
        for (name, quantity), path in zip(data.streams.items(), targets, strict=False):
            put(
                path,
                lambda temp, n=name, q=quantity: _write_stream(temp, n, q.values, q.units),
            )
            written.append(path)
        meta = {
            "source_file": str(data.path),
            "procedure": data.procedure,
            "status": data.status,
            "metadata": {k: v for k, v in data.metadata.items() if k != "parameters"},
            "parameters": data.parameters,
            "results": data.results,
            "default_plot": list(data.default_plot),
            "units": data.units(),
        }
        text = json.dumps(meta, default=_json_default, indent=2, sort_keys=True) + "\n"
        path = targets[-1]
        put(path, lambda temp: temp.write_text(text, encoding="utf-8"))
        written.append(path)
    except OSError as exc:
        raise RunFileError(f"{folder}: cannot write the CSV export: {exc}") from exc
    return written


def export_netcdf(
    run: RunData | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    engine: str = "scipy",
    overwrite: bool = False,
) -> Path:
    """Write ``run`` as one NetCDF file (the :func:`~chipctl.analysis.to_xarray` dataset).

    Args:
        run: a :class:`~chipctl.analysis.RunData` or the path of a run file.
        out: the NetCDF file to write (its folder is created if needed).
        engine: the xarray NetCDF engine; "scipy" (NetCDF 3) needs no C library.
        overwrite: replace an existing file at ``out`` (never the run file itself, another
            run file, or something that is not a regular file).

    Returns:
        The file written.

    Raises:
        MissingDependencyError: xarray (or the engine's package) is not installed.
        RunFileExistsError: ``out`` exists (without ``overwrite``), or is the run file itself,
            another run file, or not a regular file (always); nothing written.
        RunFileError: the run file cannot be read (missing, damaged), or its data cannot be
            written as NetCDF to ``out``.
    """
    data = run if isinstance(run, RunData) else read_run(run)
    path = Path(out)
    check_out(path, overwrite=overwrite, source=data.path, keep_runs=True, writing="a NetCDF file")
    dataset = to_xarray(data)
    if engine == "scipy":
        for name in list(dataset.variables):
            variable = dataset[name]
            if variable.dtype.kind in "iu" and variable.dtype.itemsize >= 4 and variable.size:
                low, high = variable.values.min(), variable.values.max()
                if low < _INT32.min or high > _INT32.max:
                    dataset[name] = variable.astype(np.float64)
                    dataset[name].attrs.update(variable.attrs)
                    dataset[name].attrs["note"] = (
                        f"stored as float64: {variable.dtype} values do not fit NetCDF 3 int32"
                    )
    try:
        write_output(
            path,
            lambda temp: dataset.to_netcdf(temp, engine=engine),
            overwrite=overwrite,
            source=data.path,
            writing="a NetCDF file",
        )
    except RunFileExistsError:
        raise
    except OSError as exc:
        raise RunFileError(f"{path}: cannot write NetCDF: {exc}") from exc
    except ValueError as exc:
        if "engine" in str(exc):
            from chipctl.analysis import MissingDependencyError

            raise MissingDependencyError(f"NetCDF engine {engine!r}: {exc}") from exc
        source = dataset.attrs.get("source_file", "the run")
        raise RunFileError(f"{source}: cannot be written as NetCDF to {path}: {exc}") from exc
    return path
