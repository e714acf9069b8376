"""Drift compensation of a deployed network: GDC and AdaBS.

[LG p.5; JO §II-E, Methods E, F; DESIGN.md "Inference executor"].

**GDC** (global drift compensation [JO Methods E], per core on the chip [LG p.5]): per tile
α̂ = ⟨R, R₀⟩/⟨R₀, R₀⟩ over the 64 reference inputs' calibrated outputs (R₀ measured by
:func:`procedures.inference.calibration.calibrate`), merged into the affine scale of the tile's
LDPU coefficients (:func:`procedures.inference.streaming.coefficients`).

**AdaBS** [JO §II-E, Methods F]: GDC, then the batch-norm statistics of every layer with a folded
batch norm are re-estimated from calibration mini-batches through the chip (momentum
p = 0.015^(1/n) over n batches, γ and β kept), and the new affine loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from drivers.errors import LimitError
from procedures.inference.deployment import Deployment, LayerPlan
from procedures.inference.graph import BatchNorm
from procedures.inference.streaming import forward, raw_counts

ADABS_MOMENTUM_BASE = 0.015
"""AdaBS running-statistics momentum p = 0.015^(1/n) over n batches [JO Methods F]."""


def drift_factors(deployment: Deployment) -> dict[int, float]:
    """α̂ per core from the reference inputs (GDC readout), without changing anything."""
    cores = list(deployment.tiles)
    x = np.stack([deployment.tiles[c].reference_inputs for c in cores])
    counts = raw_counts(deployment, cores, x)
    factors = {}
    for core, (p, n) in zip(cores, counts, strict=True):
        state = deployment.tiles[core]
        r0 = state.reference_outputs
        r = state.calibrated(p, n)
        energy = float(np.sum(r0 * r0))
        # A tile whose reference outputs are all zero has nothing to measure drift by.
        factors[core] = float(np.sum(r * r0) / energy) if energy > 0 else 1.0
    return factors


def compensate(deployment: Deployment, method: str) -> dict[int, float]:
    """Set the drift factors: "none" (α = 1), "gdc" (α̂ per core); returns them."""
    if method == "none":
        factors = dict.fromkeys(deployment.tiles, 1.0)
    elif method == "gdc":
        factors = drift_factors(deployment)
    else:
        raise LimitError(f"compensation must be 'none' or 'gdc' here, got {method!r}")
    for core, alpha in factors.items():
        if not (math.isfinite(alpha) and alpha > 0):
            raise LimitError(f"core {core}: drift factor {alpha} is not positive")
        deployment.tiles[core].alpha = alpha
    deployment.stale = True
    return factors


def adapt_batchnorm(deployment: Deployment, batches: Sequence[np.ndarray]) -> dict[str, float]:
    """AdaBS: re-estimate the folded batch norms from ``batches`` through the chip.

    Returns the relative change of the mean affine scale per adapted layer.
    """
    adapted = [p for p in deployment.plans.values() if p.mapping.folded_batchnorm]
    if not adapted or not batches:
        return {}
    momentum = ADABS_MOMENTUM_BASE ** (1.0 / len(batches))
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for plan in adapted:
        bn = deployment.graph.node(plan.mapping.folded_batchnorm or "")
        assert isinstance(bn, BatchNorm)
        stats[plan.mapping.node] = (bn.mean.astype(np.float64), bn.var.astype(np.float64))

    def observe(plan: LayerPlan, pre: np.ndarray) -> None:
        # pre: (samples, channels) pre-BN outputs W·x + bias measured through the chip.
        name = plan.mapping.node
        mean, var = stats[name]
        batch_mean = pre.mean(axis=0)
        batch_var = pre.var(axis=0)
        mean = momentum * mean + (1 - momentum) * batch_mean
        var = momentum * var + (1 - momentum) * batch_var
        stats[name] = (mean, var)
        _set_batchnorm(deployment, plan, mean, var)

    before = {p.mapping.node: float(np.mean(np.abs(p.scale))) for p in adapted}
    for x in batches:
        forward(deployment, x, observe=observe)
    return {
        name: float(np.mean(np.abs(deployment.plans[name].scale)) / before[name] - 1.0)
        for name in before
    }


def _set_batchnorm(
    deployment: Deployment, plan: LayerPlan, mean: np.ndarray, var: np.ndarray
) -> None:
    bn = deployment.graph.node(plan.mapping.folded_batchnorm or "")
    assert isinstance(bn, BatchNorm)
    a = bn.scale.astype(np.float64) / np.sqrt(var + bn.epsilon)
    # mean is that of W·x + bias, so b = β − a·mean already carries the bias.
    plan.scale = a
    plan.offset = bn.bias.astype(np.float64) - a * mean
    deployment.stale = True


def reset_batchnorm(deployment: Deployment) -> None:
    """Back to the software batch-norm statistics (undo AdaBS)."""
    for plan in deployment.plans.values():
        plan.scale = plan.mapping.affine_scale.astype(np.float64)
        plan.offset = plan.mapping.affine_offset.astype(np.float64)
    deployment.stale = True
