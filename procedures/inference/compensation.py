"""Drift compensation of a deployed network: GDC per core or per row, and AdaBS.

[LG p.5; JO §II-E, Methods E, F; DESIGN.md "Inference executor"].

Every method starts from the fit made right after programming (:meth:`TileState.restore_fit
<procedures.inference.deployment.TileState.restore_fit>`), so methods can follow each other in
any order. Re-fitting the rows at time t is :mod:`procedures.inference.recalibration`.

**GDC** (global drift compensation [JO Methods E], per core on the chip [LG p.5]): per tile
α̂ = ⟨R, R₀⟩/⟨R₀, R₀⟩ over the 64 reference inputs' calibrated outputs (R₀ measured by
:func:`procedures.inference.calibration.calibrate`), merged into the affine scale of the tile's
LDPU coefficients (:func:`procedures.inference.streaming.coefficients`).

**Per-row GDC** (``gdc-column``; "column" is the crossbar's output line, a row of our (out, in)
matrices). The same readout per output row: α̂_r = Σ_k R_kr·R₀_kr / Σ_k R₀_kr², and the row's
LDPU gains u₊, u₋ divided by α̂_r (the ADC offset does not drift). Devices of one row drift
alike on average but rows differ (their own mix of conductances and drift exponents ν,
chip.md §1.2), which one factor per core cannot follow. A row whose reference outputs are all
zero takes the core's α̂. Noise: 64 inputs per row; a row's α̂_r carries its read noise ÷ 8.

**AdaBS** [JO §II-E, Methods F], after GDC. The per-output-channel affine of each analog layer
is re-estimated from calibration mini-batches run through the chip, in graph order (a layer
sees the already adapted layers before it), with running statistics updated by momentum
p = 0.015^(1/n) over n batches:

* a layer with a folded batch norm: its statistics (mean, variance of W·x + b) start at the
  batch norm's own and the new affine is γ/√(var + ε), β − a·mean (γ, β kept);
* a layer without batch norm (PyTorch's eval export folds BN into the weights): the mean μ₀
  and standard deviation σ₀ of each output channel (W·x + b, before ReLU) are recorded
  through the chip right after deployment on the same batches with the same running rule
  (:func:`record_channel_statistics`; weighing the batches alike matters: a plain mean over
  400 samples against a running estimate dominated by the last ~150 differs by ~5 % per
  channel from sampling alone); the running statistics start there, and the affine maps the
  channel back onto them: y' = μ₀ + (y − μ)·σ₀/σ, i.e. scale a·r and offset
  b + a·(μ₀ − r·μ + (r − 1)·bias) with r = σ₀/σ. A channel with σ₀ or σ of zero (dead on the
  calibration data) keeps r = 1 and only its mean moves.
* LSTM and GRU layers are not adapted (their gate pre-activations go to the GDPU, which has
  no per-channel affine, or to the host gates); a network with nothing to adapt is refused
  (:func:`adaptable_layers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.errors import LimitError
from procedures.inference.deployment import Deployment, LayerPlan
from procedures.inference.graph import BatchNorm
from procedures.inference.streaming import forward, raw_counts

ADABS_MOMENTUM_BASE = 0.015
"""AdaBS running-statistics momentum p = 0.015^(1/n) over n batches [JO Methods F]."""
COMPENSATIONS = ("none", "gdc", "adabs", "gdc-column", "recal")
"""Compensations of ``infer``, in the order of their codes in the run file."""


@dataclass
class ChannelStatistics:
    """Mean and variance of each output channel of one layer (W·x + bias, before ReLU)."""

    mean: np.ndarray
    var: np.ndarray

    def to_json(self) -> dict[str, list[float]]:
        """Plain lists (a checkpoint's state)."""
        return {"mean": [float(v) for v in self.mean], "var": [float(v) for v in self.var]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelStatistics:
        """Back from :meth:`to_json`."""
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["var"], np.float64))


def drift_factors(deployment: Deployment) -> dict[int, float]:
    """α̂ per core from the reference inputs (GDC readout), without changing anything."""
    return {core: alpha for core, (alpha, _) in _row_readout(deployment).items()}


def _row_readout(deployment: Deployment) -> dict[int, tuple[float, np.ndarray]]:
    """Per core (α̂ of the core, α̂_r per used row): one MVM batch of the reference inputs."""
    cores = list(deployment.tiles)
    x = np.stack([deployment.tiles[c].reference_inputs for c in cores])
    counts = raw_counts(deployment, cores, x)
    readout = {}
    for core, (p, n) in zip(cores, counts, strict=True):
        state = deployment.tiles[core]
        rows = state.tile.shape[0]
        r0 = state.reference_outputs[:, :rows]
        r = state.calibrated_at_calibration(p, n)[:, :rows]
        energy = float(np.sum(r0 * r0))
        # A tile whose reference outputs are all zero has nothing to measure drift by.
        alpha = float(np.sum(r * r0) / energy) if energy > 0 else 1.0
        row_energy = np.sum(r0 * r0, axis=0)
        per_row = np.full(rows, alpha)
        measured = row_energy > 0
        per_row[measured] = np.sum(r * r0, axis=0)[measured] / row_energy[measured]
        readout[core] = (alpha, per_row)
    return readout


def compensate(deployment: Deployment, method: str) -> dict[int, float]:
    """Back to the calibration-time fit, then: "none" (α = 1), "gdc" (α̂ per core) or
    "gdc-column" (α̂_r per row in the LDPU gains). Returns the factor per core (for
    "gdc-column" the mean of its rows')."""
    if method not in ("none", "gdc", "gdc-column"):
        raise LimitError(f"compensation must be 'none', 'gdc' or 'gdc-column' here, got {method!r}")
    for state in deployment.tiles.values():
        state.restore_fit()
    deployment.stale = True
    if method == "none":
        return dict.fromkeys(deployment.tiles, 1.0)
    readout = _row_readout(deployment)
    factors = {}
    for core, (alpha, per_row) in readout.items():
        state = deployment.tiles[core]
        values = np.array([alpha]) if method == "gdc" else per_row
        bad = values[~(np.isfinite(values) & (values > 0))]
        if bad.size:
            raise LimitError(f"core {core}: drift factor {bad[0]} is not positive")
        if method == "gdc":
            state.alpha = alpha
        else:
            rows = per_row.size
            state.u_pos[:rows] /= per_row
            state.u_neg[:rows] /= per_row
        factors[core] = float(np.mean(values))
    return factors


# -- AdaBS --------------------------------------------------------------------------------------


def adaptable_layers(deployment: Deployment) -> list[str]:
    """The analog layers AdaBS adapts (all but LSTMs and GRUs); refused when there are none."""
    names = [n for n, p in deployment.plans.items() if not p.recurrent]
    if not names:
        raise LimitError(
            "adabs: no analog layer with a per-channel affine (LSTM gates go to the GDPU, "
            "which has none; GRU gates to the host); choose gdc, gdc-column or recal"
        )
    return names


def record_channel_statistics(
    deployment: Deployment, batches: Sequence[np.ndarray]
) -> dict[str, ChannelStatistics]:
    """Per adaptable layer, the output channels' mean and variance through the chip over
    ``batches`` as deployed now (call right after calibration): AdaBS's reference. The same
    running statistics as :func:`adapt` keeps, started at the first batch's, so that AdaBS on
    the same batches weighs them alike and finds nothing to change on an undrifted chip."""
    names = set(adaptable_layers(deployment))
    if not batches:
        raise LimitError("adabs needs at least one calibration batch")
    momentum = ADABS_MOMENTUM_BASE ** (1.0 / len(batches))
    stats: dict[str, ChannelStatistics] = {}

    def observe(plan: LayerPlan, pre: np.ndarray) -> None:
        name = plan.mapping.node
        if name not in names:
            return
        if name not in stats:
            stats[name] = ChannelStatistics(pre.mean(axis=0), pre.var(axis=0))
        else:
            _update(stats[name], pre, momentum)

    for x in batches:
        forward(deployment, x, observe=observe)
    return stats


def _update(stats: ChannelStatistics, pre: np.ndarray, momentum: float) -> None:
    """One step of the running statistics [JO Methods F]."""
    stats.mean = momentum * stats.mean + (1 - momentum) * pre.mean(axis=0)
    stats.var = momentum * stats.var + (1 - momentum) * pre.var(axis=0)


def adapt(
    deployment: Deployment,
    batches: Sequence[np.ndarray],
    reference: dict[str, ChannelStatistics],
    *,
    layers: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """AdaBS on every adaptable layer (or those of ``layers``; module docstring); returns per
    layer what was adapted: ``kind`` ("batchnorm" or "channel-affine"), ``channels``, and the
    change of the affine scale against the software affine (``scale_change_mean``/``_max``:
    mean and largest |a'/a − 1|) and of its offset (``offset_change_rms``, output units)."""
    if not batches:
        raise LimitError("adabs needs at least one calibration batch")
    names = adaptable_layers(deployment) if layers is None else list(layers)
    momentum = ADABS_MOMENTUM_BASE ** (1.0 / len(batches))
    running: dict[str, ChannelStatistics] = {}
    for name in names:
        plan = deployment.plans[name]
        if plan.mapping.folded_batchnorm:
            bn = _batchnorm(deployment, plan)
            running[name] = ChannelStatistics(bn.mean.astype(np.float64), bn.var.astype(np.float64))
        elif name in reference:
            ref = reference[name]
            running[name] = ChannelStatistics(ref.mean.copy(), ref.var.copy())
        else:
            raise LimitError(
                f"adabs: layer {name!r} has no batch norm and no statistics recorded after "
                "deployment (record_channel_statistics)"
            )

    def observe(plan: LayerPlan, pre: np.ndarray) -> None:
        # pre: (samples, channels) W·x + bias measured through the chip, mapped order.
        name = plan.mapping.node
        if name not in running:
            return
        stats = running[name]
        _update(stats, pre, momentum)
        if plan.mapping.folded_batchnorm:
            _set_batchnorm(deployment, plan, stats)
        else:
            _set_channel_affine(deployment, plan, reference[name], stats)

    for x in batches:
        forward(deployment, x, observe=observe)
    return {name: _adapted(deployment.plans[name]) for name in names}


def _adapted(plan: LayerPlan) -> dict[str, Any]:
    a0 = plan.mapping.affine_scale.astype(np.float64)
    b0 = plan.mapping.affine_offset.astype(np.float64)
    safe = np.where(a0 != 0, a0, 1.0)
    change = np.abs(plan.scale / safe - 1.0)[a0 != 0]
    return {
        "kind": "batchnorm" if plan.mapping.folded_batchnorm else "channel-affine",
        "channels": int(a0.size),
        "scale_change_mean": float(change.mean()) if change.size else 0.0,
        "scale_change_max": float(change.max()) if change.size else 0.0,
        "offset_change_rms": float(np.sqrt(np.mean((plan.offset - b0) ** 2))),
    }


def _batchnorm(deployment: Deployment, plan: LayerPlan) -> BatchNorm:
    bn = deployment.graph.node(plan.mapping.folded_batchnorm or "")
    assert isinstance(bn, BatchNorm)
    return bn


def _set_batchnorm(deployment: Deployment, plan: LayerPlan, stats: ChannelStatistics) -> None:
    bn = _batchnorm(deployment, plan)
    a = bn.scale.astype(np.float64) / np.sqrt(stats.var + bn.epsilon)
    # mean is that of W·x + bias, so b = β − a·mean already carries the bias.
    plan.scale = a
    plan.offset = bn.bias.astype(np.float64) - a * stats.mean
    deployment.stale = True


def _set_channel_affine(
    deployment: Deployment,
    plan: LayerPlan,
    reference: ChannelStatistics,
    stats: ChannelStatistics,
) -> None:
    a = plan.mapping.affine_scale.astype(np.float64)
    b = plan.mapping.affine_offset.astype(np.float64)
    bias = _bias(plan)
    sigma0, sigma = np.sqrt(reference.var), np.sqrt(stats.var)
    live = (sigma0 > 0) & (sigma > 0)
    r = np.ones_like(sigma)
    r[live] = sigma0[live] / sigma[live]
    plan.scale = a * r
    plan.offset = b + a * (reference.mean - r * stats.mean + (r - 1.0) * bias)
    deployment.stale = True


def _bias(plan: LayerPlan) -> np.ndarray:
    """The layer's bias in mapped order (what the observer adds to W·x)."""
    bias = getattr(plan.node, "bias", None)
    rows = plan.mapping.affine_scale.size
    return np.zeros(rows) if bias is None else np.asarray(bias, np.float64)[:rows]


def adapt_batchnorm(deployment: Deployment, batches: Sequence[np.ndarray]) -> dict[str, float]:
    """AdaBS on the layers with a folded batch norm only; returns the relative change of the
    mean affine scale per adapted layer. A network without batch norm is refused (use
    :func:`record_channel_statistics` and :func:`adapt`)."""
    bn_layers = [n for n, p in deployment.plans.items() if p.mapping.folded_batchnorm]
    if not bn_layers:
        raise LimitError(
            "adapt_batchnorm: the network has no batch norm (an eval-mode export folds it into "
            "the weights); record_channel_statistics after deployment and adapt instead"
        )
    before = {n: float(np.mean(np.abs(deployment.plans[n].scale))) for n in bn_layers}
    adapt(deployment, batches, {}, layers=bn_layers)
    return {n: float(np.mean(np.abs(deployment.plans[n].scale)) / before[n] - 1.0) for n in before}


def reset_batchnorm(deployment: Deployment) -> None:
    """Back to the software affine of every layer (undo AdaBS)."""
    for plan in deployment.plans.values():
        plan.scale = plan.mapping.affine_scale.astype(np.float64)
        plan.offset = plan.mapping.affine_offset.astype(np.float64)
    deployment.stale = True
