"""The run-file format: layout, names, size limits and how values are stored and read back.

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

Status, reason and end time live in small pre-created fixed-size datasets, never attributes:
attributes cannot be written once the file is in SWMR mode, and variable-length strings live
in the global heap, which SWMR does not publish safely to readers.

A checkpoint row is ``{"index", "time", "state", "rows", "board_time_s"}``: the procedure's
state, the row count of every stream at that moment (all flushed before the row is written) and
the simulated board's virtual time, if it has one.

This module holds what the writer (:mod:`chipctl.runfile.writer`) and the reader
(:mod:`chipctl.runfile.reader`) agree on: the format marker, the fixed string sizes, the chunk
rule, the one error type, and the helpers that encode values for the file (fixed-size UTF-8,
JSON of parameters and results, lossless casts to a stream's dtype) and decode them again.
The full layout, attribute by attribute, is in ``docs/runfile-format.md``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from chipctl.errors import ChipctlError
from procedures.base import StreamSpec

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
"""Values of ``/entry/run/status``: ``running`` while written, then one of the other three."""


class RunFileError(ChipctlError):
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


def fixed_bytes(text: str, size: int, what: str, *, cut: bool) -> bytes:
    """``text`` as UTF-8 of at most ``size`` bytes, for a fixed-size string dataset.

    A longer text raises :class:`RunFileError`, or with ``cut`` is shortened with a marker
    (the full text goes to the log as a warning).
    """
    data = text.encode("utf-8")
    if len(data) <= size:
        return data
    if not cut:
        raise RunFileError(f"{what} is {len(data)} bytes of JSON, above the limit of {size}")
    log.warning("%s cut to %d bytes in the run file; full text: %s", what, size, text)
    marker = f" [... {len(data)} bytes, cut; full text in the log]".encode()
    return data[: size - len(marker)].decode("utf-8", "ignore").encode() + marker


def decode_text(value: Any) -> str:
    """A string attribute or dataset value as ``str`` (bytes decoded as UTF-8).

    A one-element array (the ``results`` dataset) gives its element.
    """
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == (1,):
        return decode_text(value[0])
    return str(value)


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars and arrays as Python numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def coerce_values(values: np.ndarray, spec: StreamSpec, rows: bool) -> np.ndarray:
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


def parameters_json(parameters: Mapping[str, Any]) -> str:
    """The ``/entry@parameters`` JSON: arrays stand as ``{"array": path, "shape": [...]}``."""
    encoded: dict[str, Any] = {}
    for name, value in parameters.items():
        if isinstance(value, np.ndarray):
            encoded[name] = {"array": f"parameters/{name}", "shape": list(value.shape)}
        else:
            encoded[name] = value
    return json.dumps(encoded, default=json_default, sort_keys=True)
