"""Run one benchmark: ``python -m benchmarks NAME``; prints one JSON object with its figures.

Each benchmark module has ``run() -> dict`` (or ``run_from_env()``, preferred when present,
which sizes the run from environment variables). Figures are ratios against a baseline measured in
the same run, so they mean the same on any machine. Benchmarks are never run as timed tests.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("name", choices=available(), help="benchmark to run")
    args = parser.parse_args(argv)
    module = importlib.import_module(f"benchmarks.{args.name}")
    figures = getattr(module, "run_from_env", module.run)()
    json.dump({"benchmark": args.name, **figures}, sys.stdout, indent=2, default=float)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
