"""Conductance snapshot: verify-read every device of a set of cores.

One row per core: the four devices of every cell in ADC counts (the published verify read,
0.2 V / 512 ns [LG Methods]), and the board time of the read. Resumable per core.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from drivers.board import Board
from drivers.errors import LimitError
from procedures.base import Checkpoint, Data, Parameter, Procedure, Progress, StreamSpec

SHAPE = (256, 256, 4)
"""Rows, columns, devices per weight of the HERMES chip: the declared shape of the stream
(declared before a board is connected); the reads follow ``board.geometry``."""


class ConductanceSnapshot(Procedure):
    """Read the conductance of every device of the chosen cores."""

    name: ClassVar[str] = "snapshot"
    title: ClassVar[str] = "Conductance snapshot"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("cores", [0], kind="cores", description="cores to read", minimum=0, maximum=63),
    )
    default_plot: ClassVar[tuple[str, str | None]] = ("mean_counts", "core")

    def streams(self) -> tuple[StreamSpec, ...]:
        return (
            StreamSpec("core", (), "i2", "1", "core id of the row"),
            StreamSpec("conductance", SHAPE, "u2", "counts", "verify read of every device"),
            StreamSpec("mean_counts", (), "f4", "counts", "mean read over the core"),
            StreamSpec("board_time", (), "f8", "s", "board clock after the read"),
        )

    def total(self) -> int:
        return len(self.params["cores"])

    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        cores: list[int] = self.params["cores"]
        done = int(resume_from["cores_done"]) if resume_from else 0
        shape = board.geometry.device_shape
        if shape != SHAPE:
            raise LimitError(
                f"snapshot: the board's chip has {shape} devices per core; the conductance "
                f"stream is declared for {SHAPE}"
            )
        rows, cols, devices = np.indices(shape).reshape(3, -1)
        for position in range(done, len(cores)):
            self.check_stop()
            core = cores[position]
            counts = board.verify_read(core, rows, cols, devices).reshape(shape)
            yield Data("core", np.int16(core))
            yield Data("conductance", counts)
            yield Data("mean_counts", np.float32(counts.mean()))
            yield Data("board_time", np.float64(board.status().uptime_s))
            yield Checkpoint({"cores_done": position + 1})
            yield Progress(position + 1, len(cores), f"core {core}")
