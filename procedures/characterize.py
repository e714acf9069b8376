"""MVM-error characterisation by the published method [LG §IV; chip.md §2b].

Per core: 2,048 random inputs (uniform over the 8-bit PWM range, 30 % of entries zero) through
the programmed weights W; the raw counts P − N are brought to weight units by one least-squares
scale s (what Wmax/Gmax does once the chip is calibrated); then

- effective weights Ŵ = argmin ‖y_exp − Ŵx‖² (least squares over all inputs),
- ε_total = y_exp − W·x, ε_linear = Ŵ·x − W·x (programming), ε_residual = y_exp − Ŵ·x (PWM/ADC
  nonlinearity, read noise, leakage, IR drop),

each reported as ‖ε‖₂/‖W·x‖₂, and as a histogram in int8 output units (the ideal outputs' largest
magnitude mapped to 127), as in [LG Fig 2b].

``output="ldpu"`` characterises the calibrated chain instead: the int8 LDPU outputs q (per-ADC
gain/offset and per-channel affine loaded by ``calibrate``) are mapped back to weight units by
the affine the procedure is given, y = (q − affine_offset)/affine_scale / counts_per_unit ·
Wmax/Gmax (Gmax in verify counts [LG Eq 1]; ``counts_per_unit`` = k̄ of the calibration set),
with no fitted scale: what the calibration achieves, int8 quantisation included. The affine is
read back from the core's LDPU (``Board.read_ldpu``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from drivers.board import Board
from drivers.errors import LimitError
from procedures.base import Checkpoint, Data, Parameter, Procedure, Progress, StreamSpec

ROWS = COLS = 256
HISTOGRAM_HALF_WIDTH = 40
"""Histogram bins are the int8 error values −40..40, plus one underflow and one overflow bin."""
N_BINS = 2 * HISTOGRAM_HALF_WIDTH + 3
ERRORS = ("total", "linear", "residual")


def random_inputs(
    rng: np.random.Generator, n: int, sparsity: float, cols: int = COLS
) -> np.ndarray:
    """int8 inputs (n, cols), uniform in −127..127 with a fraction ``sparsity`` set to 0.

    ``cols`` is the chip's column count (``board.geometry.cols``; 256 on HERMES)."""
    x = rng.integers(-127, 128, size=(n, cols))
    x[rng.random(x.shape) < sparsity] = 0
    return x.astype(np.int8)


def int8_histogram(errors: np.ndarray, scale: float) -> np.ndarray:
    """Counts of round(errors·scale) in −40..40 with explicit under- and overflow bins."""
    values = np.rint(errors.reshape(-1) * scale)
    inner = np.clip(values, -HISTOGRAM_HALF_WIDTH - 1, HISTOGRAM_HALF_WIDTH + 1)
    return np.bincount((inner + HISTOGRAM_HALF_WIDTH + 1).astype(np.int64), minlength=N_BINS)


def least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """argmin_B ‖x·B − y‖² for a tall x of full column rank, by the normal equations.

    xᵀx·B = xᵀy costs two matrix products and a 256 × 256 solve: 14 ms for 2,048 × 256 with
    256 right-hand sides, against 140 ms for QR and seconds for LAPACK's SVD-based ``lstsq``.
    Squaring the condition number is harmless for the MVM inputs characterised here (κ(x) ≈ 2
    for 30 %-sparse random inputs; results agree with QR to 1e-15). A badly conditioned x (too
    few or too sparse inputs: κ(xᵀx) above 1e8) falls back to ``lstsq``.
    """
    gram = x.T @ x
    if gram.size == 0 or np.linalg.cond(gram) > 1e8:
        return np.linalg.lstsq(x, y, rcond=None)[0]
    return np.linalg.solve(gram, x.T @ y)


def mvm_errors(
    weights: np.ndarray,
    inputs: np.ndarray,
    counts_difference: np.ndarray,
    *,
    scale: float | None = None,
) -> dict[str, Any]:
    """The published error decomposition for one core (pure computation, no I/O).

    Args:
        weights: programmed weights W (256, 256), rows are outputs.
        inputs: inputs x (n, 256).
        counts_difference: measured P − N counts (n, 256), or any measured outputs.
        scale: weight units per measured unit; default the least-squares scale.

    Returns a dict with the scale (weight units per count), Ŵ, the three relative errors,
    their int8 histograms (3, 83) and the effective weight error std(Ŵ − W)/max|W|.
    """
    x = inputs.astype(np.float64)
    ideal = x @ weights.T
    measured = counts_difference.astype(np.float64)
    denominator = float(np.sum(measured * measured))
    if denominator == 0 or not np.any(ideal):
        raise LimitError("the MVM outputs are all zero: nothing to characterise")
    if scale is None:
        scale = float(np.sum(measured * ideal) / denominator)
    y_exp = scale * measured
    w_hat_t = least_squares(x, y_exp)
    fitted = x @ w_hat_t
    eps = {"total": y_exp - ideal, "linear": fitted - ideal, "residual": y_exp - fitted}
    norm = float(np.linalg.norm(ideal))
    to_int8 = 127.0 / float(np.max(np.abs(ideal)))
    w_max = float(np.max(np.abs(weights)))
    return {
        "scale": scale,
        "w_hat": w_hat_t.T,
        "relative": np.array([np.linalg.norm(eps[name]) / norm for name in ERRORS]),
        "histograms": np.stack([int8_histogram(eps[name], to_int8) for name in ERRORS]),
        "weight_error": float(np.std(w_hat_t.T - weights) / w_max) if w_max else float("nan"),
    }


SPARSITY = Parameter(
    "sparsity", 0.3, units="1", description="fraction of zero inputs", minimum=0.0, maximum=0.95
)
"""The random inputs' fraction of zeros (30 % [LG §IV]); shared by the procedures using
:func:`random_inputs`."""


class Characterize(Procedure):
    """MVM error of programmed cores: ε_total, ε_linear, ε_residual [LG §IV]."""

    name: ClassVar[str] = "characterize"
    title: ClassVar[str] = "MVM error characterisation"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter(
            "weights",
            np.zeros((ROWS, COLS)),
            kind="array",
            description="weights programmed on the cores: (256, 256) for all or (n, 256, 256)",
        ),
        Parameter(
            "cores", [0], kind="cores", description="cores to characterise", minimum=0, maximum=63
        ),
        Parameter(
            "n_inputs",
            2048,
            kind=int,
            description="random input vectors per core [LG §IV]",
            minimum=256,
            maximum=65536,
        ),
        SPARSITY,
        Parameter("mode", 4, kind=int, description="MVM mode: 1- or 4-phase", choices=(1, 4)),
        Parameter(
            "batch", 256, kind=int, description="inputs per MVM frame", minimum=1, maximum=4096
        ),
        Parameter("seed", 0, kind=int, description="seed of the random inputs", minimum=0),
        Parameter(
            "output",
            "raw",
            kind=str,
            description="raw: P − N counts with one least-squares scale; ldpu: calibrated int8 "
            "outputs mapped by the calibration's affine",
            choices=("raw", "ldpu"),
        ),
        Parameter(
            "counts_per_unit",
            0.0,
            units="1",
            description="ldpu: calibrated counts per verify count × input LSB (k̄ of the set)",
            minimum=0.0,
        ),
        Parameter(
            "g_max_counts",
            0.0,
            units="counts",
            description="ldpu: Gmax the weights were programmed with (verify counts)",
            minimum=0.0,
        ),
    )
    default_plot: ClassVar[tuple[str, str | None]] = ("eps_total", "core")
    resume_streams: ClassVar[tuple[str, ...]] = tuple(f"eps_{name}" for name in ERRORS)
    """A resumed run takes the finished cores' errors back, so its means cover every core."""

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        weights = self.params["weights"]
        cores = self.params["cores"]
        if weights.shape == (ROWS, COLS):
            weights = np.broadcast_to(weights, (len(cores), ROWS, COLS))
        if weights.shape != (len(cores), ROWS, COLS):
            raise LimitError(
                f"parameter weights: shape {self.params['weights'].shape} is neither (256, 256) "
                f"nor ({len(cores)}, 256, 256) for {len(cores)} cores"
            )
        if not np.all(np.any(weights != 0, axis=(1, 2))):
            raise LimitError("parameter weights: a core's weights are all zero")
        if self.params["output"] == "ldpu" and not (
            self.params["counts_per_unit"] > 0 and self.params["g_max_counts"] > 0
        ):
            raise LimitError(
                "output 'ldpu' needs counts_per_unit (from the calibration set) and g_max_counts"
            )
        self._weights = weights

    def _ldpu_to_units(
        self, board: Board, core: int, position: int, q: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """int8 outputs → calibrated counts (affine undone) and weight units per count."""
        coefficients = board.read_ldpu(core)
        affine = coefficients.affine_scale.astype(np.float64)
        if np.any(affine == 0):
            raise LimitError(f"core {core}: an LDPU affine scale is 0; load a calibration")
        counts = (q - coefficients.affine_offset.astype(np.float64)) / affine
        w_max = float(np.max(np.abs(self._weights[position])))
        return counts, w_max / (self.params["g_max_counts"] * self.params["counts_per_unit"])

    def streams(self) -> tuple[StreamSpec, ...]:
        return (
            StreamSpec("core", (), "i2", "1", "core id of the row"),
            StreamSpec("eps_total", (), "f8", "1", "‖y_exp − Wx‖/‖Wx‖"),
            StreamSpec("eps_linear", (), "f8", "1", "‖Ŵx − Wx‖/‖Wx‖ (programming error)"),
            StreamSpec("eps_residual", (), "f8", "1", "‖y_exp − Ŵx‖/‖Wx‖ (nonlinearity and noise)"),
            StreamSpec("weight_error", (), "f8", "1", "std(Ŵ − W)/max|W|"),
            StreamSpec("scale", (), "f8", "1", "weight units per output count (LS, or calibrated)"),
            StreamSpec(
                "histograms",
                (3, N_BINS),
                "i8",
                "1",
                "int8 error histograms (total, linear, residual), bins under,−40..40,over",
            ),
            StreamSpec("effective_weights", (ROWS, COLS), "f4", "1", "least-squares Ŵ"),
        )

    def total(self) -> int:
        return len(self.params["cores"])

    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        p = self.params
        cores: list[int] = p["cores"]
        geometry = board.geometry
        if self._weights.shape[1:] != geometry.weight_shape:
            raise LimitError(
                f"parameter weights: cores of shape {self._weights.shape[1:]}, but the board's "
                f"chip has {geometry.rows} × {geometry.cols} weights per core"
            )
        done = int(resume_from["cores_done"]) if resume_from else 0
        kept = (resume_from or {}).get("streams", {})
        summary: dict[str, list[float]] = {
            name: [float(v) for v in np.asarray(kept.get(f"eps_{name}", []))[:done]]
            for name in ERRORS
        }
        for position in range(done, len(cores)):
            self.check_stop()
            core = cores[position]
            # One input stream per core position: a resumed run draws the same inputs.
            rng = np.random.default_rng([p["seed"], position])
            inputs = random_inputs(rng, p["n_inputs"], p["sparsity"], geometry.cols)
            measured = np.empty((p["n_inputs"], geometry.rows), np.float64)
            for start in range(0, p["n_inputs"], p["batch"]):
                self.check_stop()
                stop = min(start + p["batch"], p["n_inputs"])
                if p["output"] == "ldpu":
                    measured[start:stop] = board.mvm(
                        core, inputs[start:stop], mode=p["mode"], output="ldpu"
                    )
                else:
                    measured[start:stop] = board.mvm(
                        core, inputs[start:stop], mode=p["mode"]
                    ).difference
            scale: float | None = None
            if p["output"] == "ldpu":
                measured, scale = self._ldpu_to_units(board, core, position, measured)
            result = mvm_errors(self._weights[position], inputs, measured, scale=scale)
            yield Data("core", np.int16(core))
            for index, name in enumerate(ERRORS):
                yield Data(f"eps_{name}", result["relative"][index])
                summary[name].append(float(result["relative"][index]))
            yield Data("weight_error", result["weight_error"])
            yield Data("scale", result["scale"])
            yield Data("histograms", result["histograms"])
            yield Data("effective_weights", result["w_hat"].astype(np.float32))
            yield Checkpoint({"cores_done": position + 1})
            yield Progress(
                position + 1, len(cores), f"core {core}: ε_total {result['relative'][0]:.2%}"
            )
        self.results = {f"eps_{name}_mean": float(np.mean(v)) for name, v in summary.items() if v}
