"""``chipctl sweep SPEC.toml``: a variability study over simulated chips on Dask.

Wiring (chipctl/cli/__init__.py, ``build_parser``)::

    from chipctl.cli.sweep import add_sweep_commands
    taken |= add_sweep_commands(commands)

Exit status: 0 when every point succeeded, 1 when some failed (they are recorded in the result
file; a re-run retries them), 2 for an invalid spec or a result file of another study, 130 when
interrupted (finished points are kept; a re-run continues).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be ≥ 1")
    return value


def default_out(study_name: str) -> Path:
    """The default result file of a study: ``runs/sweep-<name>.h5`` (stable, so re-runs resume)."""
    return Path("runs") / f"sweep-{study_name}.h5"


def _quiet_dask() -> None:
    """Dask's scheduler and nannies log every worker start and stop at INFO, each on its own
    logger with its own level (set when distributed is imported): raise them to WARNING."""
    import distributed  # noqa: F401  (creates and configures its loggers)

    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("distributed", "dask"):
            logging.getLogger(name).setLevel(logging.WARNING)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Handler of ``chipctl sweep``: validate, run, print the summary; the exit status."""
    from rich.console import Console

    from chipctl.sweep import SpecError, StoreError, load_spec, run_sweep
    from chipctl.sweep.points import FIGURE_OF_MERIT
    from chipctl.sweep.summary import print_summary

    console = Console(stderr=False)
    if getattr(args, "verbose", 0) < 1:
        _quiet_dask()
    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        print(f"chipctl sweep: {exc}", file=sys.stderr)
        return 2
    if args.scheduler and args.workers is not None:
        print(
            "chipctl sweep: --workers applies to the local cluster, not with --scheduler",
            file=sys.stderr,
        )
        return 2
    out = args.out or default_out(spec.name)
    n_points = len(spec.points())
    where = args.scheduler or f"a local cluster of {args.workers or 'all'} worker processes"
    console.print(f"[bold]{spec.name}[/] ({spec.kind}): {n_points} points on {where} → {out}")
    show_bar = not args.no_progress and console.is_terminal
    try:
        if show_bar:
            report = _run_with_bar(spec, out, args, console)
        else:
            report = run_sweep(
                spec,
                out,
                scheduler=args.scheduler,
                workers=args.workers,
                on_point=lambda d, n, p, e: _print_point(console, d, n, p, e),
            )
    except StoreError as exc:
        print(f"chipctl sweep: {exc}", file=sys.stderr)
        return 2
    if report.summary and len(report.summary["n"]):
        print_summary(report.summary, FIGURE_OF_MERIT[spec.kind], f"{spec.name}: summary", console)
    console.print(
        f"{report.points_ok} point(s) run, {report.points_skipped} already in the file, "
        f"{report.points_failed} failed, {report.wall_s:.1f} s; results in {report.out}"
        + (f", plot {report.plot}" if report.plot else "")
    )
    if report.interrupted:
        console.print("interrupted: finished points are kept; run the same command to continue")
        return 130
    return 1 if report.points_failed else 0


def _print_point(console: Any, done: int, total: int, point: Any, error: str) -> None:
    from rich.markup import escape

    status = f"[red]failed[/]: {escape(error)}" if error else "ok"
    console.print(
        f"[{done}/{total}] seed {point.seed} {point.mode}"
        f"{'+gdp' if point.gdp else ''} {point.model} {status}"
    )


def _run_with_bar(spec: Any, out: Path, args: argparse.Namespace, console: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from chipctl.sweep import run_sweep

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"sweep {spec.name}", total=None)

        def on_point(done: int, total: int, point: Any, error: str) -> None:
            progress.update(task, completed=done, total=total)
            if error:
                _print_point(progress.console, done, total, point, error)

        return run_sweep(
            spec, out, scheduler=args.scheduler, workers=args.workers, on_point=on_point
        )


def add_sweep_commands(commands: Any) -> set[str]:
    """Add ``sweep`` to the ``chipctl`` subcommands; returns {"sweep"}."""
    sweep = commands.add_parser(
        "sweep",
        help="variability study: Monte Carlo over simulated chips on Dask (docs/sweep.md)",
        description="Run a sweep spec: every point builds its own simulated chip, programs it "
        "and measures it over drift; rows go to an HDF5 file as points finish, then a summary "
        "over chips and a PNG plot. Re-running skips the points already in the file.",
    )
    sweep.add_argument("spec", type=Path, metavar="SPEC.toml", help="the study (docs/sweep.md)")
    sweep.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="an existing Dask scheduler (default: a local cluster of worker processes)",
    )
    sweep.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="local worker processes (default: one per CPU core)",
    )
    sweep.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="RESULT.h5",
        help="result file (default runs/sweep-<name>.h5); an existing one is continued",
    )
    sweep.add_argument(
        "--no-progress", action="store_true", help="a line per point instead of a progress bar"
    )
    sweep.set_defaults(handler=cmd_sweep)
    return {"sweep"}
