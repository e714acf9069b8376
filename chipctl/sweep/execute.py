"""Run a sweep on Dask: submit the pending points, store rows as they finish, summarise.

A local cluster by default (``LocalCluster(processes=True, n_workers=os.cpu_count(),
threads_per_worker=1)``: one process per core, each point single-threaded), or an existing
scheduler (``Client("tcp://HOST:PORT")``; its workers must have chipctl installed). Dask does
the queueing, placement and worker restarts; this module submits one task per point
(:func:`chipctl.sweep.points.run_point`), follows them with ``as_completed`` and appends every
finished point to the result file at once. A point whose task raised (a failed procedure, a
lost worker) is recorded with its error text and does not stop the others.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chipctl.sweep.points import FIGURE_OF_MERIT, point_task
from chipctl.sweep.spec import Point, Spec
from chipctl.sweep.store import ResultStore, pending, read_rows
from chipctl.sweep.summary import plot_summary, summarize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    """What a sweep run did.

    Attributes:
        out: the result file.
        plot: the PNG next to it ("" if there was nothing to plot).
        points_total: points of the spec.
        points_skipped: points already in the file (not run again).
        points_ok: points that succeeded in this run.
        points_failed: points that failed in this run.
        errors: error text per failed point key.
        wall_s: wall time of the run, s.
        interrupted: stopped by Ctrl-C before every point finished.
        summary: the summary table (columns).
    """

    out: Path
    plot: str
    points_total: int
    points_skipped: int
    points_ok: int
    points_failed: int
    errors: dict[str, str]
    wall_s: float
    interrupted: bool
    summary: dict[str, Any]


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A Dask client: on ``scheduler`` if given, else on a new local process cluster.

    Args:
        scheduler: address of a running scheduler, e.g. "tcp://10.0.0.5:8786".
        workers: local worker processes (default ``os.cpu_count()``); not with ``scheduler``.
    """
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        if workers is not None:
            raise ValueError("workers applies to the local cluster only, not with a scheduler")
        with Client(scheduler) as client:
            yield client
        return
    n = workers if workers is not None else (os.cpu_count() or 1)
    if n < 1:
        raise ValueError(f"workers must be ≥ 1, got {n}")
    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (memory back to the OS
    # sooner); with it, glibc maps and unmaps every large temporary array of the simulator and
    # a point runs ~1.5x slower (measured), so it is dropped. OMP/OPENBLAS/MKL_NUM_THREADS=1
    # stay. The scheduler's HTTP server (dashboard, health) goes on a free local port: its
    # default 8787 may be taken by another cluster (Dask then warns and moves anyway).
    trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with (
        dask.config.set(trim),
        LocalCluster(
            processes=True, n_workers=n, threads_per_worker=1, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def run_sweep(
    spec: Spec,
    out: str | Path,
    *,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    on_point: Callable[[int, int, Point, str], None] | None = None,
) -> SweepReport:
    """Run the pending points of ``spec`` and store the rows, summary and plot in ``out``.

    Args:
        spec: the validated study.
        out: the HDF5 result file (created, or continued if it holds the same study).
        client: an existing ``distributed.Client`` to use (tests); else one is made from
            ``scheduler``/``workers`` (:func:`dask_client`) when there is anything to run.
        on_point: called after every finished point with (done, total, point, error text).

    Returns:
        The :class:`SweepReport`; a Ctrl-C stops submitting and waiting, cancels the rest and
        still writes the summary of what finished.

    Raises:
        StoreError: ``out`` holds another study.
    """
    started = time.monotonic()
    store = ResultStore(out, spec)
    points = spec.points()
    todo = pending(points, store.done_keys())
    errors: dict[str, str] = {}
    ok = 0
    interrupted = False
    if todo:
        if client is not None:
            ok, interrupted = _execute(client, store, todo, errors, on_point)
        else:
            with dask_client(scheduler, workers) as own:
                ok, interrupted = _execute(own, store, todo, errors, on_point)
    summary, plot = finish(store)
    return SweepReport(
        out=store.path,
        plot=plot,
        points_total=len(points),
        points_skipped=len(points) - len(todo),
        points_ok=ok,
        points_failed=len(errors),
        errors=errors,
        wall_s=time.monotonic() - started,
        interrupted=interrupted,
        summary=summary,
    )


def _execute(
    client: Any,
    store: ResultStore,
    todo: list[Point],
    errors: dict[str, str],
    on_point: Callable[[int, int, Point, str], None] | None,
) -> tuple[int, bool]:
    from distributed import as_completed

    # A point is deterministic in its key, so the task key can be the point key.
    futures = {client.submit(point_task, p, key=f"sweep-point-{p.key}"): p for p in todo}
    ok = 0
    done = 0
    try:
        for future in as_completed(futures):
            point = futures[future]
            try:
                rows, error, details = future.result()
            except Exception as exc:  # the task itself died (e.g. KilledWorker); go on
                rows, error, details = [], f"{type(exc).__name__}: {exc}", ""
            if error:
                errors[point.key] = error
                log.info("sweep point %s (seed %d) failed: %s", point.key, point.seed, error)
            else:
                ok += 1
            future.release()
            store.append(point, rows, error, details)
            done += 1
            if on_point is not None:
                on_point(done, len(todo), point, error)
    except KeyboardInterrupt:
        client.cancel(list(futures))
        return ok, True
    return ok, False


def finish(store: ResultStore) -> tuple[dict[str, Any], str]:
    """Summarise every ok row of the file, store the summary, write the PNG next to the file."""
    rows = read_rows(store.path)
    figure = FIGURE_OF_MERIT[store.kind]
    summary = summarize(rows, figure)
    keys = rows["key"]
    ok_keys = set(keys[rows["status"] == "ok"])
    failed_keys = set(keys[rows["status"] == "failed"]) - ok_keys
    store.write_summary(
        summary,
        {"figure": figure, "points_ok": len(ok_keys), "points_failed": len(failed_keys)},
    )
    plot = ""
    if len(summary["n"]):
        plot = str(plot_summary(summary, figure, store.spec.name, store.path.with_suffix(".png")))
    return summary, plot
