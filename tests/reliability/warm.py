"""Imported by the kill tests' forkserver (:data:`tests.reliability.forked.PRELOAD`): a few
operations on a one-core simulated chip, so that the compiled simulator kernels are loaded
(numba's target set up, the cached machine code read) once in the forkserver instead of in
every forked command (~0.35 s each; the kill tests fork ~150 commands).

Nothing here may leave a thread behind: a forked child gets only the thread that forked it,
so a worker pool made here would be a dead pool in every command. One core and a small batch
run in the calling thread (the simulator splits work over its threads by core and batch size);
the check below fails the forkserver, loudly, if that ever changes.
"""

from __future__ import annotations

import threading

from drivers.sim.warm import warm_up

warm_up()
threads = [t.name for t in threading.enumerate()]
assert threads == [threading.current_thread().name], f"warm-up left threads: {threads}"
