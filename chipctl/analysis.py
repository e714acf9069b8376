"""Reading run files for analysis: numpy arrays with their units, and xarray if installed.

Built on :meth:`chipctl.runfile.RunFile.open` (the one reader of the format), so every problem
with a file (missing, not HDF5, truncated, not a chipctl run) is a
:class:`~chipctl.runfile.RunFileError` naming it. A run still being written can be read too: what
was flushed so far is what you get.

::

    from chipctl.analysis import read_run, to_xarray

    run = read_run("runs/drift.h5")
    run.procedure, run.status, run.parameters["until"]
    t = run["time"]                   # Quantity: t.values (numpy), t.units == "s"
    err = run["scale_error_gdc"]      # rows along axis 0: shape (points, cores)
    ds = to_xarray(run)               # xarray.Dataset, units in every variable's attrs

Dimensions in :func:`to_xarray`: the stream named as the axis of the run's default plot
(``/entry/data``, e.g. ``time`` for drift, ``iteration`` for program) becomes a coordinate, and
every stream with the same number of rows shares that dimension (their rows were written
together, one per point of the axis). Every other stream has its own row dimension
``<stream>_row``. The remaining dimensions of a row are ``<stream>_dim1``, ``<stream>_dim2``, ...
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chipctl.errors import ChipctlError
from chipctl.runfile import RunFile, RunFileError

__all__ = [
    "MissingDependencyError",
    "Quantity",
    "RunData",
    "read_run",
    "read_stream",
    "to_xarray",
]


class MissingDependencyError(ChipctlError, ImportError):
    """An optional package (xarray) that this function needs is not installed."""


@dataclass(frozen=True)
class Quantity:
    """The rows of one stream with their units.

    ``numpy.asarray(quantity)`` gives the values, so numpy functions take a Quantity directly
    (the units are then dropped: keep them from :attr:`units`).

    Attributes:
        name: the stream name.
        values: all rows, axis 0 = row (shape ``(rows, *row_shape)``).
        units: UDUNITS-style unit string as stored ("uS", "counts", "s", "1" = dimensionless).
        description: what one row is (the stream's ``long_name``).
    """

    name: str
    values: np.ndarray
    units: str
    description: str = ""

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """The values as a numpy array (numpy's array protocol)."""
        if dtype is None:
            return self.values if copy is not True else self.values.copy()
        return self.values.astype(dtype)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the values: ``(rows, *row_shape)``."""
        return tuple(self.values.shape)

    @property
    def label(self) -> str:
        """Axis label: description (or name) and units in brackets, e.g. ``time [s]``."""
        return f"{self.description or self.name} [{self.units or '1'}]"


@dataclass
class RunData:
    """One run file read into memory.

    Attributes:
        path: the run file.
        procedure: the procedure's name (``program``, ``drift``, ...).
        status: ``success``, ``aborted``, ``failed``, or ``running`` (still writing, or died).
        metadata: the ``/entry`` attributes (chip id, board, seed, times, ...), as
            :attr:`chipctl.runfile.RunFile.metadata`.
        parameters: the validated parameters; array parameters as numpy arrays.
        results: the procedure's results (JSON), empty until the run ended.
        streams: every stream read, by name, in file order.
        default_plot: (signal stream, axis stream or None) of ``/entry/data``.
    """

    path: Path
    procedure: str
    status: str
    metadata: dict[str, Any]
    parameters: dict[str, Any]
    results: dict[str, Any]
    streams: dict[str, Quantity] = field(default_factory=dict)
    default_plot: tuple[str, str | None] = ("", None)

    def __getitem__(self, name: str) -> Quantity:
        try:
            return self.streams[name]
        except KeyError:
            raise KeyError(
                f"{self.path}: no stream {name!r}; streams: {list(self.streams)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.streams

    def __iter__(self) -> Iterator[str]:
        return iter(self.streams)

    def units(self) -> dict[str, str]:
        """Units of every stream, by name."""
        return {name: q.units for name, q in self.streams.items()}


def read_run(path: str | os.PathLike[str], *, streams: Iterable[str] | None = None) -> RunData:
    """Read a run file (all streams, or only ``streams``) into numpy arrays with units.

    Args:
        path: the run file.
        streams: names of the streams to read (default: all of them).

    Returns:
        The run's metadata, parameters, results and streams.

    Raises:
        RunFileError: the file is missing, not HDF5, damaged or not a chipctl run, or a
            requested stream does not exist.
    """
    with RunFile.open(path) as run:
        run.refresh()
        infos = {info.name: info for info in run.stream_info()}
        wanted = list(infos) if streams is None else list(streams)
        missing = [name for name in wanted if name not in infos]
        if missing:
            raise RunFileError(f"{run.path}: no stream(s) {missing}; streams: {list(infos)}")
        data = {
            name: Quantity(name, run.stream(name), infos[name].units, infos[name].description)
            for name in wanted
        }
        return RunData(
            path=run.path,
            procedure=run.procedure,
            status=run.status,
            metadata=run.metadata,
            parameters=run.parameters,
            results=run.results,
            streams=data,
            default_plot=run.default_plot,
        )


def read_stream(path: str | os.PathLike[str], name: str) -> Quantity:
    """One stream of a run file, with its units (see :func:`read_run`)."""
    return read_run(path, streams=[name])[name]


# -- xarray -----------------------------------------------------------------------------------


def _require_xarray() -> Any:
    try:
        import xarray
    except ImportError as exc:
        raise MissingDependencyError(
            "xarray is not installed; install it (pip install xarray) to read runs as "
            "xarray Datasets or export NetCDF, or use chipctl.analysis.read_run (numpy)"
        ) from exc
    return xarray


def attr_value(value: Any) -> Any:
    """``value`` as a NetCDF-safe attribute: str, int, float or a 1-D numeric array.

    Booleans become 0/1, None becomes "", mappings and mixed lists become JSON text.
    """
    if isinstance(value, bool | np.bool_):
        return int(value)
    if value is None:
        return ""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str | int | float):
        return value
    if isinstance(value, list | tuple | np.ndarray):
        array = np.asarray(value)
        if array.ndim == 1 and array.size and array.dtype.kind in "iuf":
            return array
    return json.dumps(value, default=_json_default, sort_keys=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def row_dims(run: RunData) -> dict[str, str]:
    """The row (first) dimension name of every stream, as :func:`to_xarray` uses it."""
    _, axis = run.default_plot
    axis_rows = len(run.streams[axis]) if axis in run.streams else None
    dims: dict[str, str] = {}
    for name, quantity in run.streams.items():
        if axis is not None and axis_rows is not None and len(quantity) == axis_rows:
            dims[name] = axis
        else:
            dims[name] = f"{name}_row"
    return dims


def to_xarray(run: RunData | str | os.PathLike[str]) -> Any:
    """The run as an ``xarray.Dataset``: one variable per stream, units in its attrs.

    Args:
        run: a :class:`RunData` or the path of a run file.

    Returns:
        ``xarray.Dataset`` with one data variable per stream (attrs ``units``, ``long_name``),
        array parameters as variables ``parameter_<name>``, the default plot's axis stream as a
        coordinate (see the module docstring for the dimension names) and the run's metadata as
        dataset attrs (``parameters`` and ``results`` as JSON text, ``default_signal``,
        ``default_axis``).

    Raises:
        MissingDependencyError: xarray is not installed.
        RunFileError: the file cannot be read.
    """
    xarray = _require_xarray()
    if not isinstance(run, RunData):
        run = read_run(run)
    dims = row_dims(run)
    variables: dict[str, Any] = {}
    coords: dict[str, Any] = {}
    signal, axis = run.default_plot
    for name, quantity in run.streams.items():
        inner = [f"{name}_dim{k}" for k in range(1, quantity.values.ndim)]
        attrs = {"units": quantity.units or "1", "long_name": quantity.description or name}
        array = xarray.Variable((dims[name], *inner), quantity.values, attrs=attrs)
        if name == axis and quantity.values.ndim == 1:
            coords[name] = array
        else:
            variables[name] = array
    for name, value in run.parameters.items():
        if isinstance(value, np.ndarray):
            key = f"parameter_{name}"
            inner = [f"{key}_dim{k}" for k in range(value.ndim)]
            variables[key] = xarray.Variable(
                inner, value, attrs={"long_name": f"parameter {name}", "units": "1"}
            )
    run_attrs: dict[str, Any] = {}
    for key, value in run.metadata.items():
        if key in ("parameters", "results"):
            continue
        run_attrs[key] = attr_value(value)
    run_attrs["parameters"] = json.dumps(
        {k: v for k, v in run.parameters.items() if not isinstance(v, np.ndarray)},
        default=_json_default,
        sort_keys=True,
    )
    run_attrs["results"] = json.dumps(run.results, default=_json_default, sort_keys=True)
    run_attrs["source_file"] = str(run.path)
    run_attrs["default_signal"] = signal
    run_attrs["default_axis"] = axis or ""
    return xarray.Dataset(variables, coords=coords, attrs=run_attrs)


def summary(run: RunData) -> Mapping[str, tuple[tuple[int, ...], str]]:
    """Shape and units of every stream, by name (a quick look at what a run holds)."""
    return {name: (q.shape, q.units) for name, q in run.streams.items()}
