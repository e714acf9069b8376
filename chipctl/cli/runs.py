"""``chipctl run`` (recipes), ``runs`` (list run files), ``show`` (one run file) and
``resume`` (continue an interrupted run in the same file)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from chipctl.cli import common


def _cmd_resume(args: argparse.Namespace) -> int:
    from chipctl.resume import resume_run
    from chipctl.station import StationFileError, load_station

    try:
        station = load_station(args.station) if args.station else None
    except StationFileError as exc:
        print(f"chipctl resume: {exc}", file=sys.stderr)
        return 2
    summary = resume_run(
        args.run,
        board_url=args.board,
        timeout_s=args.timeout,
        progress=not args.no_progress,
        flush_interval_s=args.flush_interval,
        station=station,
        force=args.force,
    )
    return common.report("chipctl resume", summary)


def _cmd_run(args: argparse.Namespace) -> int:
    from chipctl.recipe import load_recipe, run_recipe

    recipe = load_recipe(args.recipe, overwrite=args.overwrite)
    print(f"recipe {recipe.path}: {len(recipe.steps)} step(s) on {recipe.board}")

    def on_step(step: Any, summary: Any) -> None:
        common.report(f"chipctl run: {step.label}", summary)

    summaries = run_recipe(
        recipe,
        progress=not args.no_progress,
        timeout_s=args.timeout,
        flush_interval_s=args.flush_interval,
        on_step=on_step,
    )
    last = summaries[-1]
    if last.status != "success":
        not_run = len(recipe.steps) - len(summaries)
        print(
            f"chipctl run: stopped at step {len(summaries)} ({last.status}); "
            f"{not_run} step(s) not run",
            file=sys.stderr,
        )
        return common.EXIT_CODES.get(last.status, 1)
    return 0


def _duration(start: str, end: str) -> str:
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return "-"
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.3f} s"


def _cmd_runs(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from chipctl.runfile import RunFile, RunFileError

    directory = Path(args.dir)
    if not directory.is_dir():
        print(f"chipctl runs: {directory}: no such directory", file=sys.stderr)
        return 1
    table = Table(title=f"Runs in {directory}")
    table.add_column("file", overflow="fold")
    for column in ("procedure", "chip", "start time", "status"):
        table.add_column(column)
    table.add_column("duration", overflow="fold")
    problems: list[str] = []
    for path in sorted(directory.rglob("*.h5")):
        try:
            with RunFile.open(path) as run:
                meta = run.metadata
                duration = _duration(run.start_time, run.end_time) if run.end_time else "-"
                table.add_row(
                    str(path.relative_to(directory)),
                    str(meta.get("procedure", "")),
                    str(meta.get("chip_id", "")),
                    run.start_time,
                    run.status,
                    duration,
                )
        except RunFileError as exc:
            table.add_row(str(path.relative_to(directory)), "", "", "", "[red]unreadable[/red]", "")
            problems.append(str(exc))
    console = Console(width=max(100, Console().width))
    console.print(table)
    for problem in problems:
        console.print(f"unreadable: {problem}", highlight=False, soft_wrap=True)
    return 0


def _summary_of(row: Any) -> str:
    import numpy as np

    if row is None:
        return "no rows"
    array = np.asarray(row)
    if array.dtype.kind not in "biuf" or array.size == 0:
        return "-"
    values = array.astype(np.float64)
    if values.size == 1:
        return f"value {values.item():.6g}"
    return f"min {values.min():.6g}  mean {values.mean():.6g}  max {values.max():.6g}"


def _cmd_show(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from chipctl.runfile import RunFile

    console = Console(width=max(100, Console().width))
    with RunFile.open(args.run) as run:
        meta = run.metadata
        info = Table(title=str(args.run), show_header=False)
        for key in (
            "procedure", "title", "status", "reason", "start_time", "end_time", "chip_id",
            "board_id", "firmware_version", "board_url", "seed", "calibration_set_id",
            "software_version", "resume_count",
        ):  # fmt: skip
            info.add_row(key, str(meta.get(key, "")))
        console.print(info)
        params = Table(title="parameters")
        params.add_column("name")
        params.add_column("value")
        for name, value in run.parameters.items():
            if hasattr(value, "shape"):
                text = f"array {value.shape} {value.dtype}"
            else:
                text = json.dumps(value)
            params.add_row(name, text)
        console.print(params)
        streams = Table(title="streams (last row)")
        for column in ("name", "rows", "row shape", "dtype", "units", "summary"):
            streams.add_column(column)
        signal, axis = run.default_plot
        for s in run.stream_info():
            mark = " (plot)" if s.name == signal else " (axis)" if s.name == axis else ""
            streams.add_row(
                s.name + mark,
                str(s.rows),
                str(s.shape),
                s.dtype,
                s.units,
                _summary_of(run.last_row(s.name)),
            )
        console.print(streams)
        checkpoints = run.checkpoints
        if checkpoints:
            last = checkpoints[-1]
            console.print(
                f"checkpoints: {len(checkpoints)}; last {last['time']}: "
                f"state {json.dumps(last['state'])}, rows {json.dumps(last['rows'])}"
            )
        else:
            console.print("checkpoints: none")
    return 0


def add_run_commands(commands: Any) -> set[str]:
    """``run``, ``runs``, ``show`` and ``resume``; returns their names."""
    run = commands.add_parser("run", help="run a recipe file (TOML) step by step")
    run.add_argument("recipe", type=Path, metavar="RECIPE.toml")
    run.add_argument(
        "--timeout",
        type=common.positive_seconds,
        default=5.0,
        metavar="S",
        help="reply timeout in s",
    )
    common.add_run_options(run)
    common.add_overwrite_option(run, "a step's run file")
    run.set_defaults(handler=_cmd_run)

    runs = commands.add_parser("runs", help="list the run files in a directory")
    runs.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="default: runs")
    runs.set_defaults(handler=_cmd_runs)

    show = commands.add_parser("show", help="metadata, parameters and streams of a run file")
    show.add_argument("run", type=Path, metavar="RUN.h5")
    show.set_defaults(handler=_cmd_show)

    resume = commands.add_parser(
        "resume", help="continue an interrupted run from its last checkpoint, in the same file"
    )
    resume.add_argument("run", type=Path, metavar="RUN.h5")
    resume.add_argument(
        "--board", default=None, metavar="URL", help="board URL (default: the one in the file)"
    )
    resume.add_argument(
        "--timeout",
        type=common.positive_seconds,
        default=5.0,
        metavar="S",
        help="reply timeout in s",
    )
    resume.add_argument(
        "--station",
        default=None,
        metavar="FILE",
        help="continue on this bench station's board, behind its limits and programming "
        "interlock (procedures that need a station: default the simulated one around the board)",
    )
    resume.add_argument(
        "--force",
        action="store_true",
        help="resume a file marked running by a process on another host (which cannot be "
        "checked from here) when you know that run is dead",
    )
    common.add_run_options(resume)
    resume.set_defaults(handler=_cmd_resume)
    return {"run", "runs", "show", "resume"}
