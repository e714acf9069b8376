"""Run a mapped network on the chip: program the tiles, calibrate them, stream activations.

[LG Methods p.9; chip.md §1.5, §1.6, §2b, §2c, §2d; DESIGN.md "Inference executor"].

:class:`ChipExecutor` is the one object callers use; each step lives in its own module, which
documents the method and its sources:

* :mod:`procedures.inference.deployment`: what is deployed (per-tile and per-layer state);
* :mod:`procedures.inference.calibration`: int8 ranges and partial-sum grids from the float32
  model, per-tile ADC fits against the target weights, GDC reference outputs;
* :mod:`procedures.inference.tile_programming`: replication of narrow tiles, Gmax under the
  line-current limit (from the workload or the worst case), program-and-verify (and GDP) in
  lockstep groups, measured ADC saturation;
* :mod:`procedures.inference.streaming`: the LDPU coefficients and the forward pass (int8
  activations, MVM frames, partial sums, LSTM through the GDPU, digital nodes);
* :mod:`procedures.inference.compensation`: drift compensation, GDC (per core or per row)
  and AdaBS;
* :mod:`procedures.inference.recalibration`: re-fitting the LDPU rows at time t.

The order of use: :meth:`~ChipExecutor.use_calibration_data`, :meth:`~ChipExecutor.program`,
(:meth:`~ChipExecutor.measure_saturation`), :meth:`~ChipExecutor.calibrate`
(:meth:`~ChipExecutor.record_channel_statistics` for AdaBS), then
:meth:`~ChipExecutor.compensate`, :meth:`~ChipExecutor.recalibrate`,
:meth:`~ChipExecutor.adapt` and :meth:`~ChipExecutor.forward` as often as needed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from drivers.ldpu import LdpuCoefficients
from procedures.inference import (
    calibration,
    compensation,
    recalibration,
    streaming,
    tile_programming,
)
from procedures.inference.compensation import ChannelStatistics
from procedures.inference.deployment import Deployment
from procedures.inference.streaming import Observer
from procedures.programming.gdp import GdpSettings
from procedures.programming.iterative import IterationStats, ProgramSettings


class ChipExecutor(Deployment):
    """A :class:`~procedures.inference.graph.Graph` deployed on a board's cores: the
    operations of a deployment (constructor arguments as
    :class:`~procedures.inference.deployment.Deployment`'s), each in its own module."""

    def use_calibration_data(
        self, x: np.ndarray, percentile: float = 100.0, *, max_rows: int = 4096
    ) -> None:
        """Learn from calibration inputs ``x`` (float32 model, no board): the partial-sum
        grids of tiles that emit partial sums and each tile's typical int8 inputs
        (:func:`procedures.inference.calibration.use_calibration_data`)."""
        calibration.use_calibration_data(self, x, percentile, max_rows=max_rows)

    def program(
        self,
        mode: str = "tdp",
        settings: ProgramSettings | None = None,
        *,
        group_size: int = 8,
        cores: Sequence[int] | None = None,
        gdp: GdpSettings | None = None,
        seed: int = 0,
    ) -> Iterator[tuple[list[int], IterationStats]]:
        """Program the tiles (all, or those on ``cores``) in lockstep groups; yields (group
        cores, stats) after every iteration and GDP step
        (:func:`procedures.inference.tile_programming.program`)."""
        return tile_programming.program(
            self, mode, settings, group_size=group_size, cores=cores, gdp=gdp, seed=seed
        )

    def measure_saturation(self) -> int:
        """Set every tile's measured ``saturated_fraction`` on its calibration-data inputs;
        returns the core-MVMs spent (:func:`procedures.inference.tile_programming.
        measure_saturation`)."""
        return tile_programming.measure_saturation(self)

    def calibrate(self, n_inputs: int = 512, seed: int = 0) -> Iterator[int]:
        """Fit every tile's per-row gains against its target weights; yields each core done
        (:func:`procedures.inference.calibration.calibrate`)."""
        return calibration.calibrate(self, n_inputs, seed)

    def mark_calibrated(self) -> None:
        """Calibration set from outside (a resumed run): coefficients must be loaded again."""
        for state in self.tiles.values():
            state.keep_fit()
        self.learned = True
        self.stale = True

    def drift_factors(self) -> dict[int, float]:
        """α̂ per core from the reference inputs (GDC readout), without changing anything."""
        return compensation.drift_factors(self)

    def compensate(self, method: str) -> dict[int, float]:
        """From the calibration-time fit: "none" (α = 1), "gdc" (α̂ per core) or "gdc-column"
        (α̂ per row); returns the factor per core
        (:func:`procedures.inference.compensation.compensate`)."""
        return compensation.compensate(self, method)

    def recalibrate(self, n_inputs: int = 512, seed: int = 0) -> int:
        """Re-fit every tile's LDPU rows on its calibration inputs now; returns the core-MVMs
        spent (:func:`procedures.inference.recalibration.recalibrate`)."""
        return recalibration.recalibrate(self, n_inputs, seed)

    def record_channel_statistics(
        self, batches: Sequence[np.ndarray]
    ) -> dict[str, ChannelStatistics]:
        """AdaBS's reference: the layers' output-channel statistics through the chip now
        (:func:`procedures.inference.compensation.record_channel_statistics`)."""
        return compensation.record_channel_statistics(self, batches)

    def adapt(
        self, batches: Sequence[np.ndarray], reference: dict[str, ChannelStatistics]
    ) -> dict[str, dict[str, Any]]:
        """AdaBS on every layer but LSTMs; returns what was adapted per layer
        (:func:`procedures.inference.compensation.adapt`)."""
        return compensation.adapt(self, batches, reference)

    def adapt_batchnorm(self, batches: Sequence[np.ndarray]) -> dict[str, float]:
        """AdaBS on the folded batch norms only (refused without any); returns the relative
        change of the mean affine scale per adapted layer."""
        return compensation.adapt_batchnorm(self, batches)

    def reset_batchnorm(self) -> None:
        """Back to the software affine of every layer (undo AdaBS)."""
        compensation.reset_batchnorm(self)

    def coefficients(self, core: int) -> LdpuCoefficients:
        """The LDPU coefficients of ``core`` for the current calibration, drift factor and
        affine (:func:`procedures.inference.streaming.coefficients`)."""
        return streaming.coefficients(self, core)

    def load(self) -> None:
        """Load every tile's LDPU coefficients onto the board."""
        streaming.load(self)

    def forward(
        self, x: np.ndarray, *, observe: Observer | None = None, keep: bool = False
    ) -> dict[str, np.ndarray]:
        """Run a batch through the chip; returns the output tensor (float, dequantised) under
        the graph's output name, and with ``keep`` every tensor
        (:func:`procedures.inference.streaming.forward`)."""
        return streaming.forward(self, x, observe=observe, keep=keep)
