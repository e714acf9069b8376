"""The simulator's worker threads (drivers.sim.threads.run_in_threads)."""

from __future__ import annotations

import threading
import time

import pytest

from drivers.sim.threads import run_in_threads


def test_jobs_run_once_each_the_first_in_the_caller() -> None:
    seen: dict[int, str] = {}

    def work(g: int, job: list[int]) -> int:
        seen[g] = threading.current_thread().name
        return sum(job)

    assert run_in_threads(work, [[1, 2], [], [3], [4]], 3) == 10
    assert sorted(seen) == [0, 2, 3]  # the empty job is skipped
    assert seen[0] == threading.current_thread().name
    assert all(seen[g].startswith("simchip") for g in (2, 3))


def test_an_error_in_the_callers_job_waits_for_the_others() -> None:
    """The pool's jobs write into the caller's arrays: the call must not return (or raise)
    before they have ended."""
    ended = threading.Event()

    def work(g: int, job: str) -> int:
        if g == 0:
            raise ValueError("bad block")
        time.sleep(0.2)
        ended.set()
        return 0

    with pytest.raises(ValueError, match="bad block"):
        run_in_threads(work, ["a", "b"], 2)
    assert ended.is_set()
