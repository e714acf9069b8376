"""``chipctl export`` and ``chipctl plot``: a run file for other tools, and its default plot.

::

    chipctl export RUN.h5 --csv DIR        # one CSV per stream (units in the header) + run.json
    chipctl export RUN.h5 --netcdf FILE    # one NetCDF file (xarray, scipy engine)
    chipctl plot RUN.h5 [--out PNG]        # the run's default plot (default: RUN.png)

None of them replaces an existing file unless ``--overwrite`` is given, and never the run file
itself, another run file, or anything that is not a regular file
(:class:`~chipctl.runfile.paths.RunFileExistsError`: one line naming the path, exit status 2).

Wiring (chipctl/cli/__init__.py, ``build_parser``), before the procedure loop::

    from chipctl.cli.analysis import add_analysis_commands
    taken |= add_analysis_commands(commands)

A file that is missing, not HDF5, truncated or not a chipctl run raises
:class:`~chipctl.runfile.RunFileError`, which ``chipctl.cli.main`` reports (exit status 1). A
missing optional package (xarray for NetCDF) is reported by the handler itself, exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_export(args: argparse.Namespace) -> int:
    """``chipctl export``: write the run as CSV files or as one NetCDF file."""
    from chipctl.analysis import MissingDependencyError, read_run
    from chipctl.export import export_csv, export_netcdf

    run = read_run(args.run)
    if args.csv is not None:
        written = export_csv(run, args.csv, overwrite=args.overwrite)
        print(f"{len(written) - 1} stream(s) of {run.path} as CSV in {args.csv}:")
        for path in written:
            print(f"  {path}")
        return 0
    try:
        path = export_netcdf(run, args.netcdf, overwrite=args.overwrite)
    except MissingDependencyError as exc:
        print(f"chipctl export: {exc}", file=sys.stderr)
        return 1
    print(f"{run.path} as NetCDF: {path}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``chipctl plot``: write the run's default plot as PNG."""
    from chipctl.plot import plot_run

    path = plot_run(args.run, args.out, overwrite=args.overwrite)
    print(f"plot: {path}")
    return 0


def add_analysis_commands(commands: Any) -> set[str]:
    """Add ``export`` and ``plot`` to the ``chipctl`` subcommands; returns their names.

    Args:
        commands: the ``argparse`` subparsers action of the ``chipctl`` parser
            (``parser.add_subparsers(...)``).

    Returns:
        ``{"export", "plot"}``.
    """
    export = commands.add_parser(
        "export",
        help="export a run file as CSV (one file per stream) or NetCDF",
        description="Export a run file for other tools: one CSV per stream with the units in "
        "the header (plus run.json with metadata, parameters and results), or one NetCDF file.",
    )
    export.add_argument("run", metavar="RUN.h5", help="the run file")
    target = export.add_mutually_exclusive_group(required=True)
    target.add_argument("--csv", metavar="DIR", default=None, help="folder for the CSV files")
    target.add_argument("--netcdf", metavar="FILE", default=None, help="NetCDF file to write")
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing files (never the run file itself or another run file)",
    )
    export.set_defaults(handler=cmd_export)

    plot = commands.add_parser(
        "plot",
        help="write a run's default plot as PNG",
        description="Plot the run's default signal against its axis (the file's /entry/data), "
        "with units on the axes, as a PNG.",
    )
    plot.add_argument("run", metavar="RUN.h5", help="the run file")
    plot.add_argument(
        "--out", metavar="PNG", default=None, help="PNG to write (default: RUN.png next to RUN.h5)"
    )
    plot.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing PNG (never the run file itself or another run file)",
    )
    plot.set_defaults(handler=cmd_plot)
    return {"export", "plot"}
