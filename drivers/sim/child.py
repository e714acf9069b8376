"""A simulator served from a child process for the length of a ``with`` block."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


@contextmanager
def announced_child(command: Sequence[str]) -> Iterator[tuple[str, str]]:
    """Start ``command``, whose first stdout line announces where it serves; yields (that line,
    "" or the child's stderr if it exited before announcing). The child is terminated and its
    pipes closed when the block ends."""
    process = subprocess.Popen(
        list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline()
        errors = process.stderr.read() if process.poll() is not None or not line else ""
        yield line, errors
    finally:
        process.terminate()
        process.wait(timeout=10)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
