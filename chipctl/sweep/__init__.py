"""Variability studies: Monte Carlo over simulated chips on a Dask cluster (``chipctl sweep``).

A spec (TOML, :mod:`chipctl.sweep.spec`) names a grid or random sample over chip instances
(simulator seeds), programming modes, GDP, drift times, compensations and models; each point is
an independent Dask task that builds its own simulated board and runs the procedures
(:mod:`chipctl.sweep.points`); rows are stored as points finish (:mod:`chipctl.sweep.store`),
then summarised over chips and plotted (:mod:`chipctl.sweep.summary`). See docs/sweep.md.

::

    from chipctl.sweep import load_spec, run_sweep
    report = run_sweep(load_spec("examples/sweep_drift.toml"), "runs/sweep-drift.h5")
"""

from chipctl.sweep.execute import SweepReport, dask_client, run_sweep
from chipctl.sweep.points import PointFailed, run_point
from chipctl.sweep.spec import Point, Spec, SpecError, load_spec, parse_spec
from chipctl.sweep.store import ResultStore, StoreError, read_rows, read_summary

__all__ = [
    "Point",
    "PointFailed",
    "ResultStore",
    "Spec",
    "SpecError",
    "StoreError",
    "SweepReport",
    "dask_client",
    "load_spec",
    "parse_spec",
    "read_rows",
    "read_summary",
    "run_point",
    "run_sweep",
]
