"""``chipctl calibration list|show|load`` and ``chipctl calibrate`` that also stores the set.

Wiring (chipctl/cli.py, ``build_parser``), before the procedure loop::

    from chipctl.cli_calibration import add_calibration_commands
    taken = {"demo", "identify", "sim"} | _add_run_commands(commands)
    taken |= add_calibration_commands(commands)

It returns {"calibration", "calibrate", "drift"}: ``calibrate`` is the generated procedure
subcommand plus ``--calibration-dir`` and a subscriber that writes the calibration set;
``drift`` is the generated subcommand whose ``--until``/``--start`` also take durations like
25s, 1h, 1d.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from chipctl.calibration import (
    CalibrationError,
    CalibrationRecorder,
    CalibrationStore,
    apply_set,
    calibration_from_run,
)
from procedures.base import Record, Stop

_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds from "86400", "25s", "90min", "1h", "1d" (positive, finite)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|m|min|h|d)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 25s, 1h, 1d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


class ResumedCalibrationRecorder(CalibrationRecorder):
    """The recorder of a resumed ``calibrate`` run (``chipctl resume``): as
    :class:`CalibrationRecorder`, but a set of the same id that the interrupted run already
    stored (it died after storing the set, before its run file said "success") is accepted
    when its coefficients are the same; a different one is still an error."""

    def __call__(self, record: Record) -> None:
        if isinstance(record, Stop) and record.status == "success" and self._start is not None:
            calibration = calibration_from_run(self._start, self._rows, record.results)
            path = self.store.path_of(calibration.chip_id, calibration.id)
            if path.exists():
                stored = CalibrationStore.read(path)
                same = stored.arrays.keys() == calibration.arrays.keys() and all(
                    np.array_equal(stored.arrays[k], calibration.arrays[k])
                    for k in calibration.arrays
                )
                if same:
                    self.calibration, self.saved = stored, path
                    return
        super().__call__(record)


def _store(args: argparse.Namespace) -> CalibrationStore:
    return CalibrationStore(args.calibration_dir)


def _cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    store = _store(args)
    table = Table(title=f"Calibration sets in {store.root}")
    for column in ("id", "chip", "created", "mode", "cores", "spread before → after"):
        table.add_column(column)
    for path, meta in store.list(args.chip):
        if isinstance(meta, str):
            table.add_row(path.name, "", "", "", "", f"[red]unreadable[/]: {meta}")
            continue
        res = meta.get("results", {})
        cores = meta.get("cores", [])
        table.add_row(
            meta["id"],
            meta["chip_id"],
            meta["created"],
            str(meta["mode"]),
            f"{len(cores)} ({cores[0]}–{cores[-1]})" if cores else "-",
            f"{res.get('gain_spread_before', float('nan')):.2%} → "
            f"{res.get('gain_spread_after', float('nan')):.2%}",
        )
    Console(width=140).print(table)
    return 0


def _find(store: CalibrationStore, ref: str, chip: str | None) -> Any:
    path = Path(ref)
    if path.suffix == ".npz" and path.exists():
        return CalibrationStore.read(path, chip_id=chip)
    for found, meta in store.list(chip):
        if found.stem == ref:
            if isinstance(meta, str):
                raise CalibrationError(meta)
            return CalibrationStore.read(found)
    raise CalibrationError(f"no calibration set {ref!r} in {store.root}")


def _cmd_show(args: argparse.Namespace) -> int:
    import json

    calibration = _find(_store(args), args.set, args.chip)
    print(f"{calibration.path}")
    print(json.dumps(calibration.metadata, indent=1, sort_keys=True))
    for name, array in sorted(calibration.arrays.items()):
        values = array.astype(float)
        print(f"{name:14s} {array.shape} {array.dtype} min {values.min():.5g} "
              f"mean {values.mean():.5g} max {values.max():.5g}")  # fmt: skip
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    from drivers.board import Board

    store = _store(args)
    with Board(args.board, timeout_s=args.timeout) as board:
        chip = board.identity.chip_id
        calibration = _find(store, args.set, chip) if args.set else store.latest(chip)
        if calibration is None:
            raise CalibrationError(f"no calibration set for chip {chip} in {store.root}")
        cores = None
        if args.cores:
            from procedures.base import parse_cores

            cores = parse_cores(args.cores)
        loaded = apply_set(board, calibration, cores)
    print(f"loaded calibration set {calibration.id} onto {len(loaded)} core(s) of {chip}")
    return 0


def _calibration_main(args: argparse.Namespace) -> int:
    try:
        return int(args.calibration_handler(args))
    except CalibrationError as exc:
        print(f"chipctl calibration: {exc}", file=sys.stderr)
        return 1


def _cmd_calibrate(args: argparse.Namespace) -> int:
    """The generated procedure command, with a subscriber that writes the calibration set."""
    from chipctl import cli
    from procedures import registry

    procedure = cli.build_procedure(args, registry.get("calibrate"))
    if isinstance(procedure, int):
        return procedure
    recorder = CalibrationRecorder(_store(args))
    procedure.calibration_store = str(recorder.store.root)  # kept for `chipctl resume`
    try:
        summary = cli.run_on_board(args, procedure, [recorder])
    except CalibrationError as exc:
        print(f"chipctl calibrate: could not store the calibration set: {exc}", file=sys.stderr)
        return 1
    if recorder.saved is not None:
        print(f"calibration set {procedure.set_id} stored in {recorder.saved}")
    return int(cli._report("chipctl calibrate", summary))


def add_calibration_commands(subparsers: Any) -> set[str]:
    """Add ``calibration``, ``calibrate`` and ``drift``; returns their names."""
    from chipctl import cli

    calibration = subparsers.add_parser("calibration", help="list, show and load calibration sets")
    sub = calibration.add_subparsers(dest="calibration_command", required=True, metavar="ACTION")
    for name, help_text, handler in (
        ("list", "list the stored calibration sets", _cmd_list),
        ("show", "metadata and arrays of one set", _cmd_show),
        ("load", "load a set onto the board's LDPUs (default: the chip's newest)", _cmd_load),
    ):
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument(
            "--calibration-dir", type=Path, default=None, metavar="DIR",
            help="store (default: $CHIPCTL_CALIBRATION_DIR or the checkout's calibration_data/)",
        )  # fmt: skip
        parser.add_argument("--chip", default=None, help="only this chip id")
        if name == "show":
            parser.add_argument("set", metavar="SET", help="set id or .npz path")
        if name == "load":
            parser.add_argument("set", nargs="?", default=None, metavar="SET")
            parser.add_argument("--cores", default=None, metavar="CORES", help="e.g. 0-3,8")
            cli._add_board_option(parser)
        parser.set_defaults(handler=_calibration_main, calibration_handler=handler)

    cli._add_procedure_command(subparsers, "calibrate", set())
    calibrate = subparsers.choices.get("calibrate")
    if calibrate is not None:
        calibrate.add_argument(
            "--calibration-dir", type=Path, default=None, metavar="DIR",
            help="where the calibration set is stored (default: $CHIPCTL_CALIBRATION_DIR or "
            "the checkout's calibration_data/)",
        )  # fmt: skip
        calibrate.set_defaults(handler=_cmd_calibrate)

    cli._add_procedure_command(subparsers, "drift", set())
    drift = subparsers.choices.get("drift")
    if drift is not None:
        for action in drift._actions:
            if action.dest in ("param_until", "param_start"):
                action.type = parse_duration
                action.help = (action.help or "") + "; also 25s, 90min, 1h, 1d"
    return {"calibration", "calibrate", "drift"}
