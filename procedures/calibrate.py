"""Per-ADC gain/offset and per-channel affine calibration of the LDPU [KA §III-E; chip.md §2b].

After the one-time analog trim the row ADCs keep a gain spread of σ 7.09 % (within ±21 %)
[KA §III-D]; the LDPU's per-ADC FP16 gain and offset FMAs equalise it (chip.md §2b step 2). How
the coefficients are fitted is not published; this is the natural least-squares choice
(UNCONFIRMED), per core:

1. Reference weights: optionally program random 30 %-sparse uniform weights (TDP, Gmax
   lowered under the 100 µA bit-line limit, [LG Methods]); otherwise whatever is on the core.
2. Read every device back ``verify_reads`` times and average: the cell conductances Ĝ in verify
   counts (the scale program-and-verify programs to, [LG Methods]; chip.md §2a).
3. ``n_inputs`` random int8 inputs x (uniform, 30 % zeros [LG §IV]) through the MVM, raw counts
   P and N per row; the expected output t = Ĝ·x (verify counts × input LSB).
4. Per row (ADC) least squares: four-phase reads every product through the positive mirror
   [LG p.3], so t ≈ u·(P − N) + o; one-phase routes a negative net current to the negative
   mirror, so t ≈ u₊·P − u₋·N + o. The ADC gain relative to the programmed targets is
   ĝ = 1/u (MVM counts per verify count·LSB).
5. LDPU coefficients (drivers/ldpu.py): gain_pos = k̄·u₊, gain_neg = k̄·u₋, offset_pos = k̄·o,
   offset_neg = 0, where k̄ (``counts_per_unit``) is the median ĝ over all calibrated ADCs, so a
   calibrated output is in the counts of the median ADC: y = k̄·Ĝ·x. The per-channel affine is
   a uniform scale per core, 127/(1.05·max|y|) over the reference outputs (no saturation for
   similar workloads), offset 0.
6. Validate on ``n_validation`` fresh inputs through the int8 LDPU output: per row the
   least-squares gain of (int8/affine) against k̄·t, per mirror in one-phase (conversions that
   saturate int8 are left out of the fit). Each core is validated right after its fit, with its
   own median gain as k̄ (k̄ cancels between the gains and the affine scale; only the FP16
   rounding of the coefficients differs, ~5e-4 relative); the final coefficients, with the
   common k̄, are loaded onto every core (``Board.load_ldpu``) at the end.

Steps 1–4 and 6 run per group of ``cores_per_group`` cores, with a checkpoint after each group
(the fits go to the ``fit_*`` and ``validated_gain`` streams). A resumed run continues with the
next group and takes the finished fits back from its run file; later groups only touch cores
the earlier ones did not, so on a fresh simulated chip of the same seed (per-core random
streams, the virtual clock restored by the runner) it gives exactly the uninterrupted result.

``mvm_error_readback_before/after`` (per core): ‖y − Ĝx‖/‖Ĝx‖ against the read-back
conductances, i.e. without the programming error: before, P − N with one least-squares scale;
after, the validation's int8 outputs mapped by the affine and k̄ (unsaturated outputs).

The per-ADC gain spread is std(ĝ)/mean(ĝ) over the ADCs of the calibrated cores (both mirrors in
one-phase), before (the raw counts) and after (the validation). A calibrated output maps back to
weight units as int8/affine_scale/k̄ · Wmax/Gmax (Gmax in verify counts, [LG Eq 1]).

The procedure only yields the coefficients (streams and results); the chipctl layer stores them
as a calibration set (chipctl/calibration.py). The set id is chosen here, so the run file can
record it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import numpy as np

from drivers.board import Board
from drivers.errors import LimitError
from drivers.ldpu import COEFFICIENT_FIELDS, LdpuCoefficients
from procedures.base import Checkpoint, Data, Parameter, Procedure, Progress, StreamSpec
from procedures.characterize import SPARSITY, random_inputs
from procedures.programming.iterative import CoreProgram, ProgramSettings, program_group
from procedures.programming.targets import (
    G_MAX_ODP_COUNTS,
    G_MAX_TDP_COUNTS,
    line_limited_g_max,
)

ROWS = COLS = 256
AFFINE_HEADROOM = 1.05
"""The reference outputs' largest magnitude maps to 127/1.05 int8 units."""
COEFFICIENTS = COEFFICIENT_FIELDS


def new_set_id(now: datetime | None = None) -> str:
    """A unique calibration-set id: ``cal-YYYYmmddTHHMMSSZ-<8 hex>``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"cal-{stamp}-{uuid.uuid4().hex[:8]}"


def reference_weights(seed: int, sparsity: float = 0.3) -> np.ndarray:
    """Uniform weights in [−1, 1] with a fraction ``sparsity`` of zeros [LG §IV]."""
    rng = np.random.default_rng([seed, 0xCA1])
    w = rng.uniform(-1.0, 1.0, size=(ROWS, COLS))
    w[rng.random(w.shape) < sparsity] = 0.0
    return w


def read_cells(board: Board, core: int, reads: int) -> np.ndarray:
    """Cell conductances (g0 + g1) − (g2 + g3) in verify counts, mean of ``reads`` reads.

    Verify counts are floored [chip.md §1.4]; the floor bias (−0.5 count per device) cancels
    between the two polarities of a cell.
    """
    shape = board.geometry.device_shape
    rows, cols, devices = np.indices(shape).reshape(3, -1)
    total = np.zeros(rows.size, np.float64)
    for _ in range(reads):
        total += board.verify_read(core, rows, cols, devices)
    g = (total / reads).reshape(shape)
    return (g[..., 0] + g[..., 1]) - (g[..., 2] + g[..., 3])


def fit_adc(
    expected: np.ndarray, positive: np.ndarray, negative: np.ndarray, mode: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-row least squares of the expected outputs on the raw counts.

    Args:
        expected: t = Ĝ·x per input and row, (n, 256), verify counts × LSB.
        positive, negative: raw counts P, N (n, 256).
        mode: 4 (t ≈ u·(P − N) + o) or 1 (t ≈ u₊·P − u₋·N + o).

    Returns (u₊, u₋, o, rms residual) per row; u₊ = u₋ in four-phase.
    """
    t = expected.astype(np.float64)
    p = positive.astype(np.float64)
    n = negative.astype(np.float64)
    ones = np.ones_like(t)
    regressors = [p - n, ones] if mode == 4 else [p, -n, ones]
    a = np.stack(regressors, axis=-1)  # (n, 256, k)
    scale = np.sqrt(np.mean(a * a, axis=0)) + 1e-30  # (256, k): conditioning
    a = a / scale
    gram = np.einsum("nrk,nrl->rkl", a, a)
    rhs = np.einsum("nrk,nr->rk", a, t)
    singular = np.linalg.det(gram) <= 0
    if np.any(singular):
        raise LimitError(_singular_fit_message(int(np.flatnonzero(singular)[0]), p, n, mode))
    coef = np.linalg.solve(gram, rhs[..., None])[..., 0] / scale
    fitted = np.einsum("nrk,rk->nr", a * scale, coef)
    rms = np.sqrt(np.mean((t - fitted) ** 2, axis=0))
    if mode == 4:
        return coef[:, 0], coef[:, 0].copy(), coef[:, 1], rms
    return coef[:, 0], coef[:, 1], coef[:, 2], rms


def _singular_fit_message(row: int, p: np.ndarray, n: np.ndarray, mode: int) -> str:
    """Why row ``row``'s calibration fit has no unique solution, and what to do."""
    if mode == 1 and np.any(p[:, row] != 0) != np.any(n[:, row] != 0):
        idle = "negative" if np.any(p[:, row] != 0) else "positive"
        return (
            f"calibration: row {row}: its {idle} counter stayed 0 for all {len(p)} calibration "
            f"inputs (one-phase: the row's current was never {idle}), so that mirror's gain "
            "cannot be fitted; calibrate in four-phase, or with inputs that drive the row both ways"
        )
    return (
        f"calibration: row {row}: its counts do not vary over the {len(p)} calibration inputs "
        "(all-zero reference weights or inputs?)"
    )


def gain_fit(y: np.ndarray, reference: np.ndarray, mode: int, mask: np.ndarray) -> np.ndarray:
    """Per-row gains of calibrated outputs ``y`` relative to ``reference``, (2, 256).

    The same form as the calibration fit (:func:`fit_adc`), with y as the regressor: four-phase
    reference ≈ a·y + c; one-phase reference ≈ a₊·max(y, 0) + a₋·min(y, 0) + c (one gain per
    mirror: a positive output comes from the positive mirror). Gains are 1/a. Samples with
    ``mask`` false (int8 saturation) are left out; selecting on the regressor does not bias a.
    """
    w = mask.astype(np.float64)
    if np.any(w.sum(axis=0) < 16):
        raise LimitError("calibration: too few unsaturated samples for a row's gain fit")
    yy = y * w
    regressors = [yy] if mode == 4 else [np.maximum(yy, 0.0), np.minimum(yy, 0.0)]
    a = np.stack([*regressors, w], axis=-1)
    gram = np.einsum("nrk,nrl->rkl", a, a)
    rhs = np.einsum("nrk,nr->rk", a, reference * w)
    coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
    gains = 1.0 / coef[:, : len(regressors)].T
    return np.vstack([gains, gains]) if mode == 4 else gains


def spread(gains: np.ndarray) -> float:
    """Relative spread std/mean of a set of gains."""
    g = np.asarray(gains, np.float64).reshape(-1)
    return float(g.std() / g.mean())


class Calibrate(Procedure):
    """Fit per-ADC gain/offset and the per-channel affine, load them onto the LDPU [KA; §2b]."""

    resumable: ClassVar[bool] = True
    resume_streams: ClassVar[tuple[str, ...]] = (
        "fit_core",
        "fit_gain",
        "fit_rms",
        "validated_gain",
    )
    """Streams a resumed run gets back (rows up to the checkpoint) in ``resume_from["streams"]``."""
    name: ClassVar[str] = "calibrate"
    title: ClassVar[str] = "ADC and LDPU calibration"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter(
            "cores", [0], kind="cores", description="cores to calibrate", minimum=0, maximum=63
        ),  # fmt: skip
        Parameter("mode", 4, kind=int, description="MVM mode calibrated", choices=(1, 4)),
        Parameter(
            "program_reference",
            False,
            kind=bool,
            description="program random reference weights first (erases the cores); "
            "default: calibrate on the weights already programmed",
        ),
        Parameter(
            "reference_mode",
            "tdp",
            kind=str,
            description="programming mode of the reference weights",
            choices=("odp", "tdp"),
        ),
        Parameter(
            "n_inputs",
            2048,
            kind=int,
            description="random inputs of the fit",
            minimum=64,
            maximum=65536,
        ),  # fmt: skip
        Parameter(
            "n_validation",
            1024,
            kind=int,
            description="fresh inputs of the validation",
            minimum=64,
            maximum=65536,
        ),  # fmt: skip
        Parameter(
            "verify_reads",
            4,
            kind=int,
            description="verify reads averaged per device",
            minimum=1,
            maximum=64,
        ),  # fmt: skip
        SPARSITY,
        Parameter(
            "batch", 512, kind=int, description="inputs per MVM frame", minimum=1, maximum=4096
        ),  # fmt: skip
        Parameter(
            "seed", 0, kind=int, description="seed of reference weights and inputs", minimum=0
        ),  # fmt: skip
        Parameter(
            "cores_per_group",
            8,
            kind=int,
            description="cores programmed, fitted and validated together (one checkpoint each)",
            minimum=1,
            maximum=8,
        ),  # fmt: skip
        Parameter("set_id", "", kind=str, description="calibration-set id (default: a new one)"),
    )
    default_plot: ClassVar[tuple[str, str | None]] = ("spread_after", "core")

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        # The id is recorded as the parameter, so a resumed run (built from the stored
        # parameters) stores its set under the same id.
        self.set_id = self.params["set_id"] = self.params["set_id"] or new_set_id()
        self.created = datetime.now(UTC).isoformat(timespec="seconds")
        self.calibration_store = ""
        """Where the chipctl layer stores the set (kept in the checkpoints for a resume)."""
        cores: list[int] = self.params["cores"]
        size = self.params["cores_per_group"]
        self.groups = [cores[i : i + size] for i in range(0, len(cores), size)]

    def metadata(self, board: Board) -> dict[str, Any]:
        meta = super().metadata(board)
        meta["calibration_set_id"] = self.set_id
        return meta

    def streams(self) -> tuple[StreamSpec, ...]:
        row = (ROWS,)
        return (
            StreamSpec("fit_core", (), "i2", "1", "core id of the fit rows"),
            StreamSpec(
                "fit_gain",
                (3, ROWS),
                "f8",
                "1",
                "least-squares fit u₊, u₋ (verify counts·LSB per count) and offset o",
            ),
            StreamSpec("fit_rms", row, "f8", "1", "rms fit residual (verify counts·LSB)"),
            StreamSpec("validated_gain", (2, ROWS), "f4", "1", "calibrated gain after (pos, neg)"),
            StreamSpec("core", (), "i2", "1", "core id of the row"),
            StreamSpec("gain_pos", row, "f4", "1", "LDPU gain of the positive counter"),
            StreamSpec("offset_pos", row, "f4", "counts", "LDPU offset of the positive counter"),
            StreamSpec("gain_neg", row, "f4", "1", "LDPU gain of the negative counter"),
            StreamSpec("offset_neg", row, "f4", "counts", "LDPU offset of the negative counter"),
            StreamSpec("affine_scale", row, "f4", "1", "per-channel affine scale (int8/count)"),
            StreamSpec("affine_offset", row, "f4", "1", "per-channel affine offset (int8)"),
            StreamSpec(
                "adc_gain", (2, ROWS), "f4", "1", "ADC gain ĝ/k̄ before (positive, negative)"
            ),
            StreamSpec("residual_rms", row, "f4", "counts", "rms fit residual (calibrated counts)"),
            StreamSpec("spread_before", (), "f8", "1", "per-ADC gain spread of the core before"),
            StreamSpec("spread_after", (), "f8", "1", "per-ADC gain spread of the core after"),
        )

    def total(self) -> int:
        programs = len(self.groups) if self.params["program_reference"] else 0
        return programs + len(self.params["cores"]) + 1

    def _program(self, board: Board, cores: list[int]) -> None:
        p = self.params
        w = reference_weights(p["seed"])
        base = G_MAX_ODP_COUNTS if p["reference_mode"] == "odp" else G_MAX_TDP_COUNTS
        g_max = line_limited_g_max(
            w,
            g_max_counts=base,
            mvm_mode=p["mode"],
            line_current_limit_ua=100.0,
            read_voltage_mv=float(board.mvm_read_voltage_mv),
        )
        targets = (w * g_max).astype(np.float32)
        jobs = [CoreProgram(c, targets, p["reference_mode"], ProgramSettings()) for c in cores]
        for _ in program_group(board, jobs):
            self.check_stop()

    def _mvm(self, board: Board, core: int, x: np.ndarray, output: str) -> Any:
        batch = self.params["batch"]
        pieces = [
            board.mvm(core, x[s : s + batch], mode=self.params["mode"], output=output)  # type: ignore[call-overload]
            for s in range(0, x.shape[0], batch)
        ]
        if output == "ldpu":
            return np.concatenate(pieces)
        return (
            np.concatenate([c.positive for c in pieces]),
            np.concatenate([c.negative for c in pieces]),
        )

    def _gains(self, fit: np.ndarray) -> np.ndarray:
        """ADC gains ĝ = 1/u of one core's fit (3, 256): u₊ only in four-phase, both in one."""
        return 1.0 / fit[: 1 if self.params["mode"] == 4 else 2]

    def _coefficients(self, k_bar: float, fit: np.ndarray, max_out: float) -> LdpuCoefficients:
        scale = 127.0 / (AFFINE_HEADROOM * k_bar * max_out)
        rows = fit.shape[1]
        return LdpuCoefficients(
            gain_pos=k_bar * fit[0],
            offset_pos=k_bar * fit[2],
            gain_neg=k_bar * fit[1],
            offset_neg=np.zeros(rows),
            affine_scale=np.full(rows, scale),
            affine_offset=np.zeros(rows),
            relu=False,
        )

    def _calibrate_core(
        self, board: Board, core: int, position: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
        """Fit and validate one core (steps 2–4 and 6); returns fit (3, 256), rms, validated
        gains (2, 256) and the per-core figures."""
        p = self.params
        mode: int = p["mode"]
        cells = read_cells(board, core, p["verify_reads"])
        rng = np.random.default_rng([p["seed"], position, 1])
        x = random_inputs(rng, p["n_inputs"], p["sparsity"], board.geometry.cols)
        positive, negative = self._mvm(board, core, x, "raw")
        expected = x.astype(np.float64) @ cells.T
        try:
            u_pos, u_neg, offset, rms = fit_adc(expected, positive, negative, mode)
        except LimitError as exc:
            raise LimitError(f"core {core}: {exc}") from None
        if np.any(u_pos <= 0) or np.any(u_neg <= 0):
            raise LimitError(f"core {core}: a fitted ADC gain is not positive (broken row?)")
        difference = positive.astype(np.float64) - negative
        ls = float(np.sum(difference * expected) / np.sum(difference * difference))
        error_before = float(np.linalg.norm(ls * difference - expected) / np.linalg.norm(expected))
        fit = np.stack([u_pos, u_neg, offset])
        max_out = float(np.max(np.abs(expected)))
        # Validated with the core's own median gain as k̄: the int8 outputs do not depend on k̄
        # (it cancels between the gains and the affine scale) beyond the FP16 rounding of the
        # coefficients, so every core is finished before the next group starts (a checkpoint).
        k_core = float(np.median(self._gains(fit)))
        coefficients = self._coefficients(k_core, fit, max_out)
        board.load_ldpu(core, coefficients)
        rng = np.random.default_rng([p["seed"], position, 2])
        x = random_inputs(rng, p["n_validation"], p["sparsity"], board.geometry.cols)
        q = self._mvm(board, core, x, "ldpu").astype(np.float64)
        reference = k_core * (x.astype(np.float64) @ cells.T)
        applied = float(coefficients.affine_scale[0])
        ok = np.abs(q) < 127
        validated = gain_fit(q / applied, reference, mode, ok)
        error_after = float(
            np.linalg.norm((q / applied - reference)[ok]) / np.linalg.norm(reference[ok])
        )
        figures = {
            "max_out": max_out,
            "mvm_error_readback_before": error_before,
            "mvm_error_readback_after": error_after,
        }
        return fit, rms, validated.astype(np.float32), figures

    def _state(self, groups_done: int, figures: dict[str, dict[str, float]]) -> dict[str, Any]:
        state: dict[str, Any] = {
            "groups_done": groups_done,
            "created": self.created,
            "figures": figures,
        }
        if self.calibration_store:
            state["calibration_store"] = self.calibration_store
        return state

    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        """Per group of cores: program the reference, fit and validate each core, checkpoint;
        then the common k̄, the final coefficients loaded onto every core, the set's rows.

        A resume continues with the first unfinished group; the finished cores' fits come back
        from the run file (``resume_from["streams"]``), their figures from the state. On a
        fresh simulated chip of the same seed that gives the uninterrupted run's result: the
        later groups only touch cores the earlier ones did not (per-core random streams).
        """
        p = self.params
        cores: list[int] = p["cores"]
        mode: int = p["mode"]
        total = self.total()
        fits: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        figures: dict[str, dict[str, float]] = {}
        first = 0
        if resume_from is not None:
            first = int(resume_from["groups_done"])
            self.created = str(resume_from.get("created", self.created))
            self.calibration_store = str(resume_from.get("calibration_store", ""))
            figures = {k: dict(v) for k, v in resume_from.get("figures", {}).items()}
            streams = resume_from.get("streams", {})
            done_cores = [c for g in self.groups[:first] for c in g]
            rows = [int(c) for c in streams.get("fit_core", [])]
            if rows != done_cores or set(figures) != {str(c) for c in done_cores}:
                raise LimitError(
                    f"calibrate: cannot resume, the run file holds fits of cores {rows} but "
                    f"its checkpoint says {done_cores} are done"
                )
            for j, core in enumerate(done_cores):
                fits[core] = (
                    np.asarray(streams["fit_gain"][j], np.float64),
                    np.asarray(streams["fit_rms"][j], np.float64),
                    np.asarray(streams["validated_gain"][j], np.float32),
                )
        else:
            yield Checkpoint(self._state(0, figures))
        position = {core: k for k, core in enumerate(cores)}
        done = sum(len(g) for g in self.groups[:first])
        if p["program_reference"]:
            done += first
        for g in range(first, len(self.groups)):
            group = self.groups[g]
            if p["program_reference"]:
                self._program(board, group)
                done += 1
                yield Progress(done, total, f"reference weights programmed on cores {group}")
            for core in group:
                self.check_stop()
                fit, rms, validated, core_figures = self._calibrate_core(
                    board, core, position[core]
                )
                fits[core] = (fit, rms, validated)
                figures[str(core)] = core_figures
                yield Data("fit_core", np.int16(core))
                yield Data("fit_gain", fit)
                yield Data("fit_rms", rms)
                yield Data("validated_gain", validated)
                done += 1
                yield Progress(done, total, f"core {core}: ADC gains fitted and validated")
            yield Checkpoint(self._state(g + 1, figures))
        self.check_stop()
        gains = np.concatenate([self._gains(fits[c][0]) for c in cores])
        k_bar = float(np.median(gains))
        per_core: dict[str, Any] = {}
        for core in cores:
            fit, rms, validated = fits[core]
            f = figures[str(core)]
            coefficients = self._coefficients(k_bar, fit, f["max_out"])
            board.load_ldpu(core, coefficients)
            core_before = spread(self._gains(fit))
            core_after = spread(validated[: 1 if mode == 4 else 2])
            yield Data("core", np.int16(core))
            for name, array in zip(COEFFICIENTS, coefficients.arrays(), strict=True):
                yield Data(name, array.astype(np.float32))
            yield Data("adc_gain", 1.0 / fit[:2] / k_bar)
            yield Data("residual_rms", k_bar * rms)
            yield Data("spread_before", core_before)
            yield Data("spread_after", core_after)
            per_core[str(core)] = {
                "spread_before": core_before,
                "spread_after": core_after,
                "affine_scale": float(coefficients.affine_scale[0]),
                "validated_gain_mean": float(validated.astype(np.float64).mean()),
                "mvm_error_readback_before": f["mvm_error_readback_before"],
                "mvm_error_readback_after": f["mvm_error_readback_after"],
                "residual_rms_counts": float(np.mean(k_bar * rms)),
            }
        yield Progress(total, total, f"k̄ = {k_bar:.4g} counts per unit; loaded onto {cores}")
        self.results = {
            "calibration_set_id": self.set_id,
            "created": self.created,
            "mode": mode,
            "cores": cores,
            "counts_per_unit": k_bar,
            "read_voltage_mv": float(board.mvm_read_voltage_mv),
            "gain_spread_before": spread(gains),
            "gain_spread_after": spread(
                np.concatenate([fits[c][2][: 1 if mode == 4 else 2] for c in cores])
            ),
            "per_core": per_core,
        }
