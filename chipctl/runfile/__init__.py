"""Run files: one HDF5 file per procedure run (NeXus-style), written live under SWMR.

- :mod:`chipctl.runfile.format`: the layout (``chipctl-run/1``), its names, size limits and
  chunk rule, :class:`RunFileError`, and how values are encoded and decoded;
- :mod:`chipctl.runfile.writer`: :class:`RunWriter`, the runner's subscriber that creates the
  file, switches it to SWMR and appends (also the continued file of a resumed run);
- :mod:`chipctl.runfile.reader`: :class:`RunFile`, the one reader of the format (also for files
  still being written);
- :mod:`chipctl.runfile.paths`: fresh run-file names (:func:`new_run_path`, :func:`run_stamp`)
  and the guard that keeps a run from replacing what is there (:func:`check_out`,
  :class:`RunFileExistsError`, :func:`writer_alive`).

The format, attribute by attribute, is in ``docs/runfile-format.md``::

    from chipctl.runfile import RunFile

    with RunFile.open("runs/drift.h5") as run:
        print(run.procedure, run.status, run.stream("time")[-1], run.units("time"))
"""

from chipctl.runfile.format import (
    CHECKPOINT_BYTES,
    CHUNK_MAX_BYTES,
    CHUNK_TARGET_BYTES,
    FORMAT,
    REASON_BYTES,
    RESULTS_BYTES,
    STATUS_BYTES,
    STATUSES,
    TIME_BYTES,
    RunFileError,
    chunk_shape,
    now_iso,
    seed_from_url,
)
from chipctl.runfile.paths import (
    RunFileExistsError,
    check_out,
    new_run_path,
    run_stamp,
    writer_alive,
)
from chipctl.runfile.reader import RunFile, StreamInfo, open_hdf5
from chipctl.runfile.writer import ResumeSource, RunWriter

__all__ = [
    "CHECKPOINT_BYTES",
    "CHUNK_MAX_BYTES",
    "CHUNK_TARGET_BYTES",
    "FORMAT",
    "REASON_BYTES",
    "RESULTS_BYTES",
    "STATUSES",
    "STATUS_BYTES",
    "TIME_BYTES",
    "ResumeSource",
    "RunFile",
    "RunFileError",
    "RunFileExistsError",
    "RunWriter",
    "StreamInfo",
    "check_out",
    "chunk_shape",
    "new_run_path",
    "now_iso",
    "open_hdf5",
    "run_stamp",
    "seed_from_url",
    "writer_alive",
]
