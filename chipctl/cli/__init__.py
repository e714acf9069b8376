"""The ``chipctl`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from chipctl import DEFAULT_BOARD_URL, __version__
from drivers.errors import LimitError
from procedures import registry
from procedures.base import Parameter, Procedure

log = logging.getLogger("chipctl")


def positive_seconds(text: str) -> float:
    """argparse type: a finite duration > 0 in s (NaN, inf, 0 and negatives refused)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds > 0")
    return value


def _add_board_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--board",
        default=DEFAULT_BOARD_URL,
        metavar="URL",
        help=(
            "board URL: mockchip://?seed=N (built-in simulated chip), socket://HOST:PORT "
            f"(simulator server or networked board), /dev/ttyUSB0 (default: {DEFAULT_BOARD_URL})"
        ),
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=5.0,
        metavar="S",
        help="reply timeout per attempt in s",
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from chipctl.demo import print_demo, run_demo

    result = run_demo(
        args.board,
        out_dir=args.out_dir,
        n_inputs=args.inputs,
        seed=args.seed,
        timeout_s=args.timeout,
        station_file=args.station,
        infer_samples=args.infer_samples,
    )
    print_demo(result)
    runs = [summary for m in result.modes for summary in (m.program, m.characterize)]
    runs += [m.calibrated for m in result.modes if m.calibrated is not None]
    runs += [r for r in (result.drift, result.inference) if r is not None]
    return 0 if all(summary.status == "success" for summary in runs) else 1


def _cmd_identify(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from drivers.board import Board

    with Board(args.board, timeout_s=args.timeout) as board:
        ident = board.identity
        status = board.status()
        table = Table(title=f"Board on {args.board}", show_header=False)
        for key, value in vars(ident).items():
            table.add_row(key, str(value))
        table.add_row("boot_id", str(status.boot_id))
        table.add_row("uptime_s", f"{status.uptime_s:.6g}")
        table.add_row("errors", ", ".join(status.errors) or "none")
        table.add_row("temperature_C", f"{board.temperature_c():.2f}")
        Console().print(table)
    return 0


def _cmd_sim_serve(args: argparse.Namespace) -> int:
    from drivers.sim.board_model import BoardOptions
    from drivers.sim.server import serve

    query = f"seed={args.seed}&cores={args.cores}&clock={args.clock}"
    if args.options:
        query += "&" + args.options.lstrip("?&")
    try:
        options = BoardOptions.from_query(query)
    except ValueError as exc:
        print(f"chipctl sim serve: {exc}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving the simulated board on %s: the protocol has no authentication", args.host
        )
    serve(options, host=args.host, port=args.port)
    return 0


# -- runs: procedures, recipes, run files ---------------------------------------------------

EXIT_CODES = {"success": 0, "failed": 1, "aborted": 130}
"""Process exit code per final run status."""


def _default_out(procedure: str) -> Path:
    return Path("runs") / f"{procedure}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.h5"


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (also off when not a TTY)"
    )
    parser.add_argument(
        "--flush-interval",
        type=positive_seconds,
        default=1.0,
        metavar="S",
        help="longest time in s that measured rows stay unflushed in the run file (default 1)",
    )


def _parameter_help(parameter: Parameter) -> str:
    parts = [parameter.description or parameter.name.replace("_", " ")]
    if parameter.kind == "array":
        parts.append("path of a .npy file")
    elif parameter.kind == "cores":
        parts.append("core ids like 0-3,8")
    if parameter.units:
        parts.append(f"units: {parameter.units}")
    if parameter.kind != "array":
        default = parameter.default
        if parameter.kind == "cores" and isinstance(default, list):
            default = ",".join(str(c) for c in default)
        parts.append(f"default: {default}")
    if parameter.minimum is not None or parameter.maximum is not None:
        low = "-inf" if parameter.minimum is None else f"{parameter.minimum:g}"
        high = "inf" if parameter.maximum is None else f"{parameter.maximum:g}"
        parts.append(f"limits: {low} to {high}")
    if parameter.choices is not None:
        parts.append(f"one of: {', '.join(str(c) for c in parameter.choices)}")
    return "; ".join(parts).replace("%", "%%")


def _add_procedure_command(commands: Any, name: str, taken: set[str]) -> None:
    """A subcommand for procedure ``name`` with one option per declared parameter."""
    if name in taken:
        log.debug("procedure %s: name taken by a built-in command; no subcommand", name)
        return
    try:
        cls = registry.get(name)
    except Exception as exc:  # a broken procedure module must not break the CLI
        log.debug("procedure %s not available on the command line: %s", name, exc)
        return
    parser = commands.add_parser(
        name,
        help=f"run the {cls.title or name} procedure into a run file",
        description=(cls.__doc__ or cls.title or name).strip().splitlines()[0],
    )
    _add_board_option(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="RUN.h5",
        help=f"run file (default: runs/{name}-YYYYmmdd-HHMMSS.h5)",
    )
    _add_run_options(parser)
    group = parser.add_argument_group("procedure parameters")
    for parameter in cls.parameters:
        option = "--" + parameter.name.replace("_", "-")
        if option in ("--board", "--timeout", "--out", "--no-progress", "--flush-interval"):
            log.debug("procedure %s: parameter %s hides a runner option", name, parameter.name)
            continue
        kwargs: dict[str, Any] = {
            "dest": f"param_{parameter.name}",
            "default": None,
            "help": _parameter_help(parameter),
        }
        if parameter.kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif parameter.kind == "array":
            kwargs["metavar"] = "FILE.npy"
        else:
            kwargs["metavar"] = {int: "N", float: "X", str: "TEXT", "cores": "CORES"}.get(
                parameter.kind, "VALUE"
            )
        group.add_argument(option, **kwargs)
    parser.set_defaults(handler=_cmd_procedure, procedure=name)


def build_procedure(args: argparse.Namespace, cls: type[Procedure]) -> Procedure | int:
    """The procedure of a generated command from its ``--param`` options (arrays from .npy
    files), or the exit code 2 after printing why it cannot be built."""
    from chipctl.recipe import load_npy

    prog = f"chipctl {cls.name}"
    values: dict[str, Any] = {}
    for parameter in cls.parameters:
        value = getattr(args, f"param_{parameter.name}", None)
        if value is None:
            continue
        if parameter.kind == "array":
            try:
                value = load_npy(Path(value))
            except ValueError as exc:
                print(f"{prog}: --{parameter.name.replace('_', '-')}: {exc}", file=sys.stderr)
                return 2
        values[parameter.name] = value
    try:
        return cls(**values)
    except LimitError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2


def run_on_board(
    args: argparse.Namespace, procedure: Procedure, subscribers: Sequence[Any] = ()
) -> Any:
    """Run ``procedure`` on ``--board`` into ``--out`` (default runs/<name>-TIME.h5) with the
    runner options of a generated command; the run summary."""
    from chipctl.runner import run_procedure
    from drivers.board import Board

    out = args.out or _default_out(procedure.name)
    with Board(args.board, timeout_s=args.timeout) as board:
        return run_procedure(
            procedure,
            board,
            out,
            progress=not args.no_progress,
            flush_interval_s=args.flush_interval,
            subscribers=subscribers,
        )


def _cmd_procedure(args: argparse.Namespace) -> int:
    procedure = build_procedure(args, registry.get(args.procedure))
    if isinstance(procedure, int):
        return procedure
    summary = run_on_board(args, procedure)
    return _report(f"chipctl {args.procedure}", summary, getattr(procedure, "summary_text", None))


def _report(prog: str, summary: Any, describe: Any = None) -> int:
    """Print how the run ended (and ``describe(results)``, a procedure's own summary, if
    given and the run has results); the exit code."""
    text = f"{prog}: {summary.status}"
    if summary.reason:
        text += f" ({summary.reason})"
    print(f"{text}; run file: {summary.path}")
    if describe is not None and summary.results:
        print(describe(summary.results))
    return EXIT_CODES.get(summary.status, 1)


def _cmd_resume(args: argparse.Namespace) -> int:
    from chipctl.runner import resume_run

    summary = resume_run(
        args.run,
        board_url=args.board,
        timeout_s=args.timeout,
        progress=not args.no_progress,
        flush_interval_s=args.flush_interval,
    )
    return _report("chipctl resume", summary)


def _cmd_run(args: argparse.Namespace) -> int:
    from chipctl.recipe import load_recipe, run_recipe

    recipe = load_recipe(args.recipe)
    print(f"recipe {recipe.path}: {len(recipe.steps)} step(s) on {recipe.board}")

    def on_step(step: Any, summary: Any) -> None:
        _report(f"chipctl run: {step.label}", summary)

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
        return EXIT_CODES.get(last.status, 1)
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


def _add_run_commands(commands: Any) -> set[str]:
    """``run``, ``runs``, ``show`` and ``resume``; returns their names."""
    run = commands.add_parser("run", help="run a recipe file (TOML) step by step")
    run.add_argument("recipe", type=Path, metavar="RECIPE.toml")
    run.add_argument(
        "--timeout", type=positive_seconds, default=5.0, metavar="S", help="reply timeout in s"
    )
    _add_run_options(run)
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
        "--timeout", type=positive_seconds, default=5.0, metavar="S", help="reply timeout in s"
    )
    _add_run_options(resume)
    resume.set_defaults(handler=_cmd_resume)
    return {"run", "runs", "show", "resume"}


def build_parser() -> argparse.ArgumentParser:
    """The ``chipctl`` argument parser with every subcommand (procedures included)."""
    parser = argparse.ArgumentParser(
        prog="chipctl",
        description="Control stack for the 64-core PCM in-memory-computing test chip.",
    )
    parser.add_argument("--version", action="version", version=f"chipctl {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="program random weights with ODP and TDP, characterise the MVM error, write run files",
    )
    _add_board_option(demo)
    demo.add_argument(
        "--out-dir", default=None, metavar="DIR", help="folder for the run files (runs/demo-TIME)"
    )
    demo.add_argument(
        "--inputs", type=int, default=2048, help="random inputs per characterisation (2048)"
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    demo.add_argument(
        "--infer-samples",
        type=int,
        default=0,
        metavar="N",
        help="test samples of the inference step (0 = whole test set, -1 = skip it)",
    )
    demo.add_argument(
        "--station",
        default=None,
        metavar="FILE",
        help="station file of a real bench (default: the simulated station around --board)",
    )
    demo.set_defaults(handler=_cmd_demo)

    identify = commands.add_parser("identify", help="print the board's identity and status")
    _add_board_option(identify)
    identify.set_defaults(handler=_cmd_identify)

    sim = commands.add_parser("sim", help="the simulated board")
    sim_commands = sim.add_subparsers(dest="sim_command", required=True, metavar="SIM_COMMAND")
    serve = sim_commands.add_parser(
        "serve", help="serve a simulated board over TCP (socket://HOST:PORT)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=5555, help="TCP port (default 5555; 0 picks a free one)"
    )
    serve.add_argument("--seed", type=int, default=1, help="chip instance seed (default 1)")
    serve.add_argument("--cores", type=int, default=64, help="number of cores (default 64)")
    serve.add_argument("--clock", choices=("virtual", "real"), default="virtual", help="clock mode")
    serve.add_argument(
        "--options",
        default="",
        metavar="QUERY",
        help="more simulator options as a URL query, e.g. 'corrupt=1e-4&drop=0.01'",
    )
    serve.set_defaults(handler=_cmd_sim_serve)

    from chipctl.cli_station import add_station_commands

    add_station_commands(commands)
    from chipctl.cli_calibration import add_calibration_commands

    taken = {"demo", "identify", "sim", "station", "power", "device-iv"}
    taken |= _add_run_commands(commands)
    taken |= add_calibration_commands(commands)
    from chipctl.cli_tui import add_tui_commands

    taken |= add_tui_commands(commands)
    from chipctl.cli_analysis import add_analysis_commands

    taken |= add_analysis_commands(commands)
    from chipctl.cli_sweep import add_sweep_commands

    taken |= add_sweep_commands(commands)
    for name in registry.available():
        _add_procedure_command(commands, name, taken)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``chipctl`` with ``argv`` (default: the process arguments); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from chipctl.recipe import RecipeError
    from chipctl.runfile import RunFileError
    from drivers.errors import DriverError

    try:
        return int(args.handler(args))
    except DriverError as exc:
        print(f"chipctl {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except RecipeError as exc:
        print(f"chipctl {args.command}: {exc}", file=sys.stderr)
        return 2
    except RunFileError as exc:
        print(f"chipctl {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
