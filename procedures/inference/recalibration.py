"""Recalibration in the field: re-fit every tile's LDPU gains and offsets at time t.

[LG Methods p.9; chip.md §2b; DESIGN.md "Inference executor"].

The host keeps what the calibration right after programming used: each tile's int8
calibration inputs (regenerated from the seed and the calibration data,
:func:`~procedures.inference.calibration.calibration_inputs`) and the float32 weights, whose
products W·x are the targets. At time t the same inputs run through the chip again and each
row's gains u₊, u₋ and offset are fitted anew against those targets
(:func:`~procedures.inference.calibration.fit_tile`). The fit absorbs drift row by row, the
programming error that drift has changed since, and any ADC change; nothing is reprogrammed,
only LDPU coefficients are loaded. The GDC reference (R₀ of the calibration fit) is kept, so
GDC after a recalibration still measures against programming time.

Cost: ``n_inputs`` core-MVMs per tile, plus the host's least-squares fit; at the default 512
inputs about as much chip time as 512 inferences of a single-core layer.
"""

from __future__ import annotations

import numpy as np

from procedures.inference.calibration import calibration_inputs, fit_tile
from procedures.inference.deployment import Deployment
from procedures.inference.streaming import raw_counts


def recalibrate(deployment: Deployment, n_inputs: int = 512, seed: int = 0) -> int:
    """Re-fit every tile on its calibration inputs (the ``n_inputs`` and ``seed`` of the
    calibration) against the float32 targets; returns the core-MVMs spent."""
    cores = list(deployment.tiles)
    inputs = [calibration_inputs(deployment, c, n_inputs, seed)[:n_inputs] for c in cores]
    counts = raw_counts(deployment, cores, np.stack(inputs))
    for core, x, (p, n) in zip(cores, inputs, counts, strict=True):
        fit_tile(deployment, core, x, p, n)
    return n_inputs * len(cores)
