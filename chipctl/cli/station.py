"""``chipctl station check``, ``chipctl power up|down`` and ``chipctl device-iv``.

Without ``--station`` the default, fully simulated station is used (started and stopped by the
command). The procedures are built through the catalog and run through the runner, so each
leaves a run file (``--out``, default ``runs/<name>-<time>.h5``) and can be resumed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from chipctl import catalog
from chipctl.catalog import RunContext
from chipctl.cli import common
from chipctl.runfile import check_out
from chipctl.runner import RunSummary, run_procedure
from chipctl.station import (
    OpenStation,
    Station,
    StationFileError,
    default_station,
    load_station,
    station_check,
)
from drivers.errors import LimitError
from procedures.base import Data, Procedure, Record


def _station(args: argparse.Namespace) -> Station:
    if args.station is None:
        return default_station()
    return load_station(args.station)


def _add_station_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--station",
        default=None,
        metavar="FILE",
        help="station file (TOML); default: the fully simulated station",
    )


def _add_out_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default=None, metavar="RUN.h5", help="run file (default runs/<name>-<time>.h5)"
    )
    common.add_overwrite_option(parser)


def _out_path(args: argparse.Namespace, name: str, extras: tuple[str, ...] = ()) -> Path:
    """``--out`` (default ``runs/<name>-<time>.h5``), and the files ``<stem>-<extra>.h5``
    next to it, checked before the station is opened (an existing file needs ``--overwrite``;
    :class:`~chipctl.runfile.RunFileExistsError`, exit 2)."""
    out = common.out_path(args, name)
    for extra in extras:
        check_out(_beside(out, extra), overwrite=args.overwrite)
    return out


def _beside(out: Path, extra: str) -> Path:
    return out.with_name(f"{out.stem}-{extra}.h5")


def _run(
    procedure: Procedure, opened: OpenStation, path: Path, overwrite: bool
) -> tuple[RunSummary, dict[str, list[Any]]]:
    """Run through the runner (run file, progress, log), keeping the data for the summary."""
    data: dict[str, list[Any]] = {}

    def collect(record: Record) -> None:
        if isinstance(record, Data):
            data.setdefault(record.stream, []).append(record.values)

    path.parent.mkdir(parents=True, exist_ok=True)
    summary = run_procedure(
        procedure,
        opened.board,
        path,
        subscribers=[collect],
        context=RunContext(),
        overwrite=overwrite,
    )
    return summary, data


def _report(name: str, summary: RunSummary) -> int:
    reason = f" ({summary.reason})" if summary.reason else ""
    print(f"{name}: {summary.status}{reason}; run file: {summary.path}")
    return 0 if summary.status == "success" else 1


def _cmd_station_check(args: argparse.Namespace) -> int:
    try:
        station = _station(args)
    except StationFileError as exc:
        print(f"chipctl station check: {exc}", file=sys.stderr)
        return 2
    with station.open() as opened:
        rows = station_check(opened)
    width = max(len(item) for item, _, _ in rows)
    print(f"station {station.path} (chip {station.chip_id})")
    for item, identity, readback in rows:
        print(f"  {item:<{width}}  {identity}")
        if readback:
            print(f"  {'':<{width}}    {readback}")
    return 0


def _cmd_power(args: argparse.Namespace) -> int:
    try:
        station = _station(args)
    except StationFileError as exc:
        print(f"chipctl power: {exc}", file=sys.stderr)
        return 2
    name = f"power_{args.direction}"
    out = _out_path(args, name)
    with station.open() as opened:
        procedure = catalog.build(name, station=opened)
        summary, _ = _run(procedure, opened, out, args.overwrite)
        _print_rails(opened)
    return _report(f"power {args.direction}", summary)


def _print_rails(opened: OpenStation) -> None:
    for rail in opened.rails:
        channel = opened.supply.channel(rail.channel)
        state = "on " if channel.output_enabled else "off"
        print(
            f"  rail {rail.name:<8} output {rail.channel} {state} "
            f"{channel.measured_voltage_v:8.4f} V {channel.measured_current_a:8.4f} A"
        )


def _cmd_device_iv(args: argparse.Namespace) -> int:
    try:
        station = _station(args)
    except StationFileError as exc:
        print(f"chipctl device-iv: {exc}", file=sys.stderr)
        return 2
    params = {
        "v_start_v": args.v_start,
        "v_stop_v": args.v_stop,
        "points": args.points,
        "compliance_a": args.compliance,
        "pulse_count": args.pulses,
        "pulse_start_ua": args.pulse_start,
        "pulse_stop_ua": args.pulse_stop,
        "read_voltage_v": args.read_voltage,
    }
    out = _out_path(args, "device_iv", ("power_up", "power_down") if args.power_up else ())
    with station.open() as opened:
        try:
            device_iv = catalog.build("device_iv", params, station=opened)
        except LimitError as exc:
            print(f"chipctl device-iv: {exc}", file=sys.stderr)
            return 2
        if args.power_up:
            power_up = catalog.build("power_up", station=opened)
            summary, _ = _run(power_up, opened, _beside(out, "power_up"), args.overwrite)
            if _report("power up", summary):
                return 1
        summary, data = _run(device_iv, opened, out, args.overwrite)
        if summary.status == "success":
            print(f"  conductance from the I–V sweep: {summary.results['conductance_us']:.4f} µS")
            for amplitude, resistance in zip(
                data.get("pulse_amplitude", []), data.get("resistance", []), strict=True
            ):
                print(f"  pulse {float(amplitude):7.1f} µA -> R = {float(resistance):12.1f} Ω")
        if args.power_up:
            power_down = catalog.build("power_down", station=opened)
            _run(power_down, opened, _beside(out, "power_down"), args.overwrite)
    return _report("device-iv", summary)


def add_station_commands(subparsers: Any) -> set[str]:
    """Add ``station check``, ``power up|down`` and ``device-iv``; returns their names."""
    station = subparsers.add_parser("station", help="the bench station (board, instruments)")
    station_commands = station.add_subparsers(
        dest="station_command", required=True, metavar="STATION_COMMAND"
    )
    check = station_commands.add_parser(
        "check", help="validate the station file, open everything, print identities/readbacks"
    )
    _add_station_option(check)
    check.set_defaults(handler=_cmd_station_check)

    power = subparsers.add_parser("power", help="sequence the chip rails up or down")
    power.add_argument("direction", choices=("up", "down"))
    _add_station_option(power)
    _add_out_option(power)
    power.set_defaults(handler=_cmd_power)

    iv = subparsers.add_parser(
        "device-iv", help="I–V sweep and R-vs-pulse of the single test device on the SMU"
    )
    _add_station_option(iv)
    _add_out_option(iv)
    iv.add_argument("--v-start", type=float, default=-0.2, help="sweep start in V (-0.2)")
    iv.add_argument("--v-stop", type=float, default=0.2, help="sweep stop in V (0.2)")
    iv.add_argument("--points", type=int, default=21, help="sweep points (21)")
    iv.add_argument("--compliance", type=float, default=1e-4, help="current limit in A (1e-4)")
    iv.add_argument("--pulses", type=int, default=0, help="R-vs-pulse pulses (0: none)")
    iv.add_argument("--pulse-start", type=float, default=300.0, help="first pulse in µA (300)")
    iv.add_argument("--pulse-stop", type=float, default=600.0, help="last pulse in µA (600)")
    iv.add_argument("--read-voltage", type=float, default=0.2, help="read voltage in V (0.2)")
    iv.add_argument(
        "--power-up",
        action="store_true",
        help="power the rails up first and down afterwards (programming needs the rails on)",
    )
    iv.set_defaults(handler=_cmd_device_iv)
    return {"station", "power", "device-iv"}
