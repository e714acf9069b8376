"""Global drift compensation (GDC): the readout, α̂, and the procedure that applies it
[JO Methods E; LG p.5; chip.md §2c].

The readout (``readout`` parameter) of a core: ``correlation`` (default), ``n_readout`` fixed
random inputs through the raw MVM, P − N per row, compared with a baseline R₀ taken right after
programming by α̂ = ⟨R, R₀⟩/⟨R₀, R₀⟩; or ``sum`` ([JO Methods E], "apply V_cal to all rows"),
``readout_level`` on every column, P and N per row = Σ G⁺, Σ G⁻ in counts, α̂ = Σ R/Σ R₀.
Outputs are rescaled by 1/α̂, merged into the LDPU affine scale; per-column (per output row)
α̂_r works the same way row by row. :mod:`procedures.drift` follows these over time.

**Compensate** applies GDC now: with an empty ``reference`` it measures and returns the
reference (call it right after programming); otherwise it measures α̂ (or α̂_r) against the
reference and loads affine_scale = baseline/α̂ onto each core's LDPU (``Board.load_ldpu``),
keeping the other coefficients. ``reference`` per core: (L + 1, 256) = the L readout rows and
the baseline affine scale (the Compensate run that measured it returns it as its "reference"
stream and result).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from drivers.board import Board
from drivers.errors import LimitError
from drivers.ldpu import LdpuCoefficients
from procedures.base import Checkpoint, Data, Parameter, Procedure, Progress, StreamSpec
from procedures.characterize import random_inputs
from procedures.programming.targets import ROWS


def gdc_alpha(readout: np.ndarray, reference: np.ndarray, method: str) -> np.ndarray:
    """α̂ per core and output row, (n_cores, 256), from readouts (n_cores, L, 256).

    ``sum`` ([JO Methods E]): α̂ = Σ R/Σ R₀ over the core (global) — rows identical;
    ``correlation``: α̂ = ⟨R, R₀⟩/⟨R₀, R₀⟩ over the core. For per-column compensation use
    :func:`gdc_alpha_rows`.
    """
    if method == "sum":
        value = readout.sum(axis=(1, 2)) / reference.sum(axis=(1, 2))
    else:
        value = (readout * reference).sum(axis=(1, 2)) / (reference * reference).sum(axis=(1, 2))
    return np.repeat(value[:, None], readout.shape[-1], axis=1)


def gdc_alpha_rows(readout: np.ndarray, reference: np.ndarray, method: str) -> np.ndarray:
    """Per-column (output row) α̂_r, (n_cores, 256); see :func:`gdc_alpha`."""
    if method == "sum":
        return readout.sum(axis=1) / reference.sum(axis=1)
    return (readout * reference).sum(axis=1) / (reference * reference).sum(axis=1)


class GdcReadout(Procedure):
    """Base of the procedures that read a core's GDC readout (the ``readout`` parameters)."""

    def _levels(self) -> int:
        """Rows L of one core's GDC readout."""
        return 2 if self.params["readout"] == "sum" else int(self.params["n_readout"])

    def _readout(self, board: Board, cores: list[int]) -> np.ndarray:
        """GDC readout per core, (n_cores, L, 256) in counts (module docstring).

        ``sum``: L = 2, the mean P and N row sums for ``readout_level`` on every column, with
        0.5 count per floored conversion added back (two conversions per counter in 4-phase).
        ``correlation``: L = ``n_readout`` fixed random inputs (seed 0xCA11), P − N.
        """
        p = self.params
        n = len(cores)
        cols = board.geometry.cols
        if p["readout"] == "sum":
            x = np.full((n, p["repeats"], cols), p["readout_level"], np.int8)
            counts = board.mvm(cores, x, mode=p["mode"])
            floor = 1.0 if p["mode"] == 4 else 0.5
            pos = counts.positive.astype(np.float64).mean(axis=1) + floor
            neg = counts.negative.astype(np.float64).mean(axis=1) + floor
            return np.stack([pos, neg], axis=1)
        x1 = random_inputs(np.random.default_rng(0xCA11), p["n_readout"], 0.3, cols)
        counts = board.mvm(cores, np.broadcast_to(x1, (n, *x1.shape)), mode=p["mode"])
        return counts.positive.astype(np.float64) - counts.negative


READOUT_PARAMETERS = (
    Parameter("readout", "correlation", kind=str, description="GDC readout: sum ([JO] all-ones "
              "ΣG) or correlation (fixed random inputs)", choices=("sum", "correlation")),
    Parameter("readout_level", 127, kind=int, description="sum readout: input on every "
              "column (of 127)", minimum=1, maximum=127),
    Parameter("n_readout", 64, kind=int, description="correlation readout: inputs",
              minimum=1, maximum=4096),
    Parameter("repeats", 16, kind=int, description="sum readout: repeats averaged",
              minimum=1, maximum=1024),
)  # fmt: skip
"""The GDC readout's parameters, shared by the procedures that take it."""


class Compensate(GdcReadout):
    """Global (or per-column) drift compensation through the LDPU affine scale [JO; §2c].

    Resumable by running it again: it is one step without a checkpoint, and it is idempotent
    (the affine scale loaded is baseline/α̂, never relative to what the LDPU holds), so a
    resumed run restarts it in the same file.
    """

    resumable: ClassVar[bool] = True
    name: ClassVar[str] = "compensate"
    title: ClassVar[str] = "Global drift compensation"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter(
            "cores", [0], kind="cores", description="cores to compensate", minimum=0, maximum=63
        ),  # fmt: skip
        Parameter(
            "reference",
            np.zeros((0,)),
            kind="array",
            description="(n_cores, 3, 256) GDC reference from a first run; empty: measure it",
        ),
        Parameter("per_column", False, kind=bool, description="one α̂ per output row"),
        Parameter("mode", 4, kind=int, description="MVM mode", choices=(1, 4)),
        *READOUT_PARAMETERS,
    )
    default_plot: ClassVar[tuple[str, str | None]] = ("alpha", None)

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        ref = self.params["reference"]
        n = len(self.params["cores"])
        levels = self._levels()
        self.levels = levels
        if ref.size and ref.shape != (n, levels + 1, ROWS):
            raise LimitError(
                f"parameter reference: shape {ref.shape}, expected ({n}, {levels + 1}, {ROWS}) "
                "(readout rows + baseline affine scale) or empty"
            )
        if ref.size and np.any(ref[:, -1] == 0):
            raise LimitError("parameter reference: baseline affine scales must be non-zero")

    def streams(self) -> tuple[StreamSpec, ...]:
        n = len(self.params["cores"])
        return (
            StreamSpec(
                "reference", (n, self.levels + 1, ROWS), "f8", "1", "readout, baseline scale"
            ),
            StreamSpec("alpha", (n, ROWS), "f8", "1", "α̂ applied per output row"),
        )

    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        p = self.params
        cores: list[int] = p["cores"]
        readout = self._readout(board, cores)
        ldpus = [board.read_ldpu(c) for c in cores]
        if not p["reference"].size:
            ref = np.concatenate(
                [readout, np.stack([c.affine_scale.astype(np.float64) for c in ldpus])[:, None]],
                axis=1,
            )
            yield Data("reference", ref)
            yield Data("alpha", np.ones((len(cores), board.geometry.rows)))
            self.results = {"measured_reference": True, "reference": ref.tolist()}
            yield Progress(1, 1, "reference measured")
            return
        ref = p["reference"]
        method = p["readout"]
        if p["per_column"]:
            alpha = gdc_alpha_rows(readout, ref[:, :-1], method)
        else:
            alpha = gdc_alpha(readout, ref[:, :-1], method)
        if not np.all(np.isfinite(alpha)) or np.any(alpha <= 0):
            raise LimitError(f"GDC: α̂ not positive and finite ({alpha.min():.3g}); wrong core?")
        for j, core in enumerate(cores):
            c = ldpus[j]
            board.load_ldpu(
                core,
                LdpuCoefficients(
                    gain_pos=c.gain_pos,
                    offset_pos=c.offset_pos,
                    gain_neg=c.gain_neg,
                    offset_neg=c.offset_neg,
                    affine_scale=ref[j, -1] / alpha[j],
                    affine_offset=c.affine_offset,
                    relu=c.relu,
                ),
            )
        yield Data("reference", ref)
        yield Data("alpha", alpha)
        self.results = {"alpha_mean": alpha.mean(axis=1).tolist(), "measured_reference": False}
        yield Progress(1, 1, f"α̂ {', '.join(f'{a:.4f}' for a in alpha.mean(axis=1))}")
