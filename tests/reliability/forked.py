"""``chipctl`` commands in processes forked from a forkserver, to be SIGKILLed (issues 8, 18.9).

The forkserver imports chipctl once (:data:`PRELOAD`), which saves the ~0.7 s interpreter
start per command, and loads the simulator's compiled kernels once
(:mod:`tests.reliability.warm`, another ~0.35 s per command); a command runs
``chipctl.cli.main(argv)`` (what ``python -m chipctl`` runs) with its output in a log file, and
a kill is a real SIGKILL of that process.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py

PRELOAD = [
    "chipctl.cli", "chipctl.runner", "chipctl.resume", "chipctl.catalog", "chipctl.calibration",
    "chipctl.inference", "chipctl.onnx_import", "chipctl.datasets", "sklearn.datasets", "onnx",
    "procedures.program_verify", "procedures.calibrate",
    "procedures.characterize", "procedures.snapshot", "procedures.drift", "procedures.infer",
    "drivers.sim.protocol_mockchip", "h5py", "tests.reliability.warm",
]  # fmt: skip
"""Modules the forkserver imports once for every forked command."""

CHECKOUT = Path(__file__).resolve().parents[2]


def forkserver_context() -> multiprocessing.context.BaseContext:
    """The forkserver context, preloading :data:`PRELOAD` (when the server starts)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def env_for(out: Path) -> dict[str, str]:
    """A command's environment: this checkout, and the attempt's own calibration store (a
    resume without a checkpoint falls back to it)."""
    return {"PYTHONPATH": str(CHECKOUT), "CHIPCTL_CALIBRATION_DIR": str(out.with_suffix(".cal"))}


@contextmanager
def _in_process_dask(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A Dask client on a cluster inside this process (threads): a SIGKILL of the process
    kills the whole sweep, scheduler and worker included, and it starts in a fraction of the
    time of a local process cluster."""
    from distributed import Client

    with Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None
    ) as client:
        yield client


def chipctl_main(argv: list[str], env: dict[str, str], log: str, dask_in_process: bool) -> None:
    """Child: ``chipctl ARGV`` with its output in ``log``; exits with its exit code.

    ``dask_in_process``: ``chipctl sweep`` runs on an in-process Dask cluster."""
    os.environ.update(env)
    output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(output, 1)
    os.dup2(output, 2)
    if dask_in_process:
        import chipctl.sweep.execute

        chipctl.sweep.execute.dask_client = _in_process_dask  # type: ignore[assignment]
    from chipctl.cli import main

    sys.exit(main(argv))


def start(ctx: Any, argv: list[str], out: Path, *, dask_in_process: bool = False) -> Any:
    """``chipctl ARGV`` in a forked process, for the output file ``out`` (log: ``out``.log)."""
    log = str(out.with_suffix(".log"))
    process = ctx.Process(target=chipctl_main, args=(argv, env_for(out), log, dask_in_process))
    process.start()
    return process


def run(ctx: Any, argv: list[str], out: Path, timeout: float = 120.0, **options: Any) -> int:
    """``chipctl ARGV`` to its end; its exit code."""
    process = start(ctx, argv, out, **options)
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join()
        raise AssertionError(f"chipctl {argv} did not finish in {timeout} s")
    return int(process.exitcode)


def kill(process: Any) -> int:
    """SIGKILL ``process`` (if still running) and reap it; its exit code (-9 if killed)."""
    process.kill()
    process.join()
    return int(process.exitcode)


def log_text(out: Path) -> str:
    log = out.with_suffix(".log")
    return log.read_text(errors="replace") if log.exists() else ""


def checkpoints_in(path: Path) -> int:
    """Checkpoints in a run file being written (0 before it exists or opens): a light SWMR
    read of the checkpoint table's length, cheap enough to poll every few ms."""
    try:
        with h5py.File(path, "r", swmr=True) as f:
            return int(f["entry/run/checkpoints"].shape[0])
    except (OSError, KeyError):
        return 0


def wait_for(condition: Any, process: Any, poll_s: float = 0.002) -> bool:
    """Poll ``condition()`` until true or the process ended; whether it became true."""
    while process.is_alive():
        if condition():
            return True
        time.sleep(poll_s)
    return bool(condition())
