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
6. Load onto the LDPU (``Board.load_ldpu``) and validate on ``n_validation`` fresh inputs
   through the int8 LDPU output: per row the least-squares gain of (int8/affine) against k̄·t,
   per mirror in one-phase (conversions that saturate int8 are left out of the fit).

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
from procedures.characterize import random_inputs
from procedures.program_verify import (
    DEVICES,
    G_MAX_ODP_COUNTS,
    G_MAX_TDP_COUNTS,
    CoreProgram,
    ProgramSettings,
    line_limited_g_max,
    program_group,
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
    rows, cols, devices = np.indices((ROWS, COLS, DEVICES)).reshape(3, -1)
    total = np.zeros(rows.size, np.float64)
    for _ in range(reads):
        total += board.verify_read(core, rows, cols, devices)
    g = (total / reads).reshape(ROWS, COLS, DEVICES)
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
    if np.any(np.linalg.det(gram) <= 0):
        raise LimitError(
            "calibration: a row's outputs do not vary (all-zero reference weights or inputs?)"
        )
    coef = np.linalg.solve(gram, rhs[..., None])[..., 0] / scale
    fitted = np.einsum("nrk,rk->nr", a * scale, coef)
    rms = np.sqrt(np.mean((t - fitted) ** 2, axis=0))
    if mode == 4:
        return coef[:, 0], coef[:, 0].copy(), coef[:, 1], rms
    return coef[:, 0], coef[:, 1], coef[:, 2], rms


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

    resumable: ClassVar[bool] = False
    name: ClassVar[str] = "calibrate"
    title: ClassVar[str] = "ADC and LDPU calibration"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter(
            "cores", [0], kind="cores", description="cores to calibrate", minimum=0, maximum=63
        ),  # fmt: skip
        Parameter("mode", 4, kind=int, description="MVM mode calibrated", choices=(1, 4)),
        Parameter(
            "program_reference",
            True,
            kind=bool,
            description="program random reference weights first (erases the cores); "
            "otherwise calibrate on the weights already programmed",
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
        Parameter(
            "sparsity",
            0.3,
            units="1",
            description="fraction of zero inputs",
            minimum=0.0,
            maximum=0.95,
        ),  # fmt: skip
        Parameter(
            "batch", 512, kind=int, description="inputs per MVM frame", minimum=1, maximum=4096
        ),  # fmt: skip
        Parameter(
            "seed", 0, kind=int, description="seed of reference weights and inputs", minimum=0
        ),  # fmt: skip
        Parameter("set_id", "", kind=str, description="calibration-set id (default: a new one)"),
    )
    default_plot: ClassVar[tuple[str, str | None]] = ("spread_after", "core")

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self.set_id = self.params["set_id"] or new_set_id()
        self.created = datetime.now(UTC).isoformat(timespec="seconds")

    def metadata(self, board: Board) -> dict[str, Any]:
        meta = super().metadata(board)
        meta["calibration_set_id"] = self.set_id
        return meta

    def streams(self) -> tuple[StreamSpec, ...]:
        row = (ROWS,)
        return (
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
            StreamSpec("validated_gain", (2, ROWS), "f4", "1", "calibrated gain after (pos, neg)"),
            StreamSpec("residual_rms", row, "f4", "counts", "rms fit residual (calibrated counts)"),
            StreamSpec("spread_before", (), "f8", "1", "per-ADC gain spread of the core before"),
            StreamSpec("spread_after", (), "f8", "1", "per-ADC gain spread of the core after"),
        )

    def total(self) -> int:
        return 2 * len(self.params["cores"]) + (1 if self.params["program_reference"] else 0)

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
        for first in range(0, len(cores), 8):
            jobs = [
                CoreProgram(c, targets, p["reference_mode"], ProgramSettings())
                for c in cores[first : first + 8]
            ]
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

    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        if resume_from is not None:
            raise LimitError("calibrate cannot resume (k̄ is shared by all cores); run it again")
        p = self.params
        cores: list[int] = p["cores"]
        mode: int = p["mode"]
        total = self.total()
        done = 0
        if p["program_reference"]:
            self._program(board, cores)
            done += 1
            yield Progress(done, total, "reference weights programmed")
        fits: dict[int, dict[str, np.ndarray]] = {}
        for position, core in enumerate(cores):
            self.check_stop()
            cells = read_cells(board, core, p["verify_reads"])
            rng = np.random.default_rng([p["seed"], position, 1])
            x = random_inputs(rng, p["n_inputs"], p["sparsity"])
            positive, negative = self._mvm(board, core, x, "raw")
            expected = x.astype(np.float64) @ cells.T
            u_pos, u_neg, offset, rms = fit_adc(expected, positive, negative, mode)
            if np.any(u_pos <= 0) or np.any(u_neg <= 0):
                raise LimitError(f"core {core}: a fitted ADC gain is not positive (broken row?)")
            difference = positive.astype(np.float64) - negative
            ls = float(np.sum(difference * expected) / np.sum(difference * difference))
            error_before = float(
                np.linalg.norm(ls * difference - expected) / np.linalg.norm(expected)
            )
            fits[core] = {
                "error_before": np.array(error_before),
                "cells": cells,
                "u_pos": u_pos,
                "u_neg": u_neg,
                "offset": offset,
                "rms": rms,
                "max_out": np.array(float(np.max(np.abs(expected)))),
            }
            done += 1
            yield Progress(done, total, f"core {core}: ADC gains fitted")
        gains = np.concatenate(
            [
                1.0 / np.stack([f["u_pos"], f["u_neg"]])[: 1 if mode == 4 else 2]
                for f in fits.values()
            ]
        )
        k_bar = float(np.median(gains))
        before = spread(gains)
        after_all: list[np.ndarray] = []
        per_core: dict[str, Any] = {}
        for position, core in enumerate(cores):
            self.check_stop()
            f = fits[core]
            scale = 127.0 / (AFFINE_HEADROOM * k_bar * float(f["max_out"]))
            coefficients = LdpuCoefficients(
                gain_pos=k_bar * f["u_pos"],
                offset_pos=k_bar * f["offset"],
                gain_neg=k_bar * f["u_neg"],
                offset_neg=np.zeros(ROWS),
                affine_scale=np.full(ROWS, scale),
                affine_offset=np.zeros(ROWS),
                relu=False,
            )
            board.load_ldpu(core, coefficients)
            rng = np.random.default_rng([p["seed"], position, 2])
            x = random_inputs(rng, p["n_validation"], p["sparsity"])
            q = self._mvm(board, core, x, "ldpu").astype(np.float64)
            reference = k_bar * (x.astype(np.float64) @ f["cells"].T)
            applied = float(coefficients.affine_scale[0])
            validated = gain_fit(q / applied, reference, mode, np.abs(q) < 127)
            after_all.append(validated[: 1 if mode == 4 else 2])
            ok = np.abs(q) < 127
            error_after = float(
                np.linalg.norm((q / applied - reference)[ok]) / np.linalg.norm(reference[ok])
            )
            core_before = spread(1.0 / np.stack([f["u_pos"], f["u_neg"]])[: 1 if mode == 4 else 2])
            core_after = spread(validated[: 1 if mode == 4 else 2])
            yield Data("core", np.int16(core))
            for name, array in zip(COEFFICIENTS, coefficients.arrays(), strict=True):
                yield Data(name, array.astype(np.float32))
            yield Data("adc_gain", (1.0 / np.stack([f["u_pos"], f["u_neg"]]) / k_bar))
            yield Data("validated_gain", validated)
            yield Data("residual_rms", k_bar * f["rms"])
            yield Data("spread_before", core_before)
            yield Data("spread_after", core_after)
            per_core[str(core)] = {
                "spread_before": core_before,
                "spread_after": core_after,
                "affine_scale": applied,
                "validated_gain_mean": float(validated.mean()),
                "mvm_error_readback_before": float(f["error_before"]),
                "mvm_error_readback_after": error_after,
                "residual_rms_counts": float(np.mean(k_bar * f["rms"])),
            }
            done += 1
            yield Progress(done, total, f"core {core}: spread {core_before:.2%} → {core_after:.2%}")
        self.results = {
            "calibration_set_id": self.set_id,
            "created": self.created,
            "mode": mode,
            "cores": cores,
            "counts_per_unit": k_bar,
            "read_voltage_mv": float(board.mvm_read_voltage_mv),
            "gain_spread_before": before,
            "gain_spread_after": spread(np.concatenate(after_all)),
            "per_core": per_core,
        }
