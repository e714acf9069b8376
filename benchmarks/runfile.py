"""Sustained append rate of the run-file writer vs a bare h5py append loop (target >= 0.8).

Both write the same full-core conductance snapshots (256×256×4 uint16 = 512 KiB per row,
``ROWS`` rows) into a resizable chunked dataset with the same chunks (one row per chunk), one
resize + write per row; the bare loop flushes once at the end, the writer as it does in a run
(SWMR, background flush every second, final status). Best of ``REPEAT`` rounds each, in a
temporary directory on the same filesystem.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from chipctl.runfile import RunWriter, chunk_shape
from procedures.base import Data, Start, Stop, StreamSpec

ROWS = 240
REPEAT = 3
SHAPE = (256, 256, 4)


def _rows() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 4096, (8, *SHAPE), dtype=np.uint16)


def _bare(path: Path, rows: np.ndarray) -> float:
    start = time.perf_counter()
    with h5py.File(path, "w", libver="latest") as f:
        dataset = f.create_dataset(
            "conductance",
            shape=(0, *SHAPE),
            maxshape=(None, *SHAPE),
            dtype="u2",
            chunks=chunk_shape(SHAPE, "u2"),
        )
        for i in range(ROWS):
            dataset.resize(i + 1, axis=0)
            dataset[i] = rows[i % len(rows)]
        f.flush()
    return time.perf_counter() - start


def _writer(path: Path, rows: np.ndarray) -> float:
    start_record = Start(
        procedure="benchmark",
        parameters={},
        streams=(StreamSpec("conductance", SHAPE, "u2", "counts", "verify read"),),
        default_plot=("conductance", None),
        metadata={"board_url": "mockchip://?seed=1"},
        total=ROWS,
    )
    start = time.perf_counter()
    writer = RunWriter(path, flush_interval_s=1.0)
    writer(start_record)
    for i in range(ROWS):
        writer(Data("conductance", rows[i % len(rows)]))
    writer(Stop("success"))
    return time.perf_counter() - start


def run() -> dict[str, float]:
    rows = _rows()
    mib = ROWS * rows[0].nbytes / 2**20
    bare: list[float] = []
    ours: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(REPEAT):  # interleaved, so drifts of the disk hit both alike
            bare.append(_bare(Path(tmp) / f"bare{k}.h5", rows))
            ours.append(_writer(Path(tmp) / f"run{k}.h5", rows))
            for old in Path(tmp).glob("*.h5"):
                old.unlink()
    bare_s, ours_s = min(bare), min(ours)
    return {
        "rows": float(ROWS),
        "mib_written": mib,
        "bare_h5py_mib_per_s": mib / bare_s,
        "runfile_writer_mib_per_s": mib / ours_s,
        "runfile_writer_rows_per_s": ROWS / ours_s,
        "ratio_vs_bare_h5py": bare_s / ours_s,
        "target_ratio": 0.8,
    }
