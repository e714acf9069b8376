"""Which MVM kernel the simulated chip uses: the compiled one when numba imports, or as told.

``mockchip://?kernel=auto|numba|numpy`` (:class:`~drivers.sim.board_model.BoardOptions`), the
environment variable ``CHIPCTL_MVM_KERNEL`` (read where ``auto`` is asked for), or
``SimulatedChip(kernel=...)``. A module of its own so that the numpy kernel never imports the
compiled one (which imports numba).
"""

from __future__ import annotations

import os

from drivers.sim.mvm import MvmKernel, NumpyMvmKernel

KERNELS = ("auto", "numba", "numpy")
KERNEL_ENV = "CHIPCTL_MVM_KERNEL"


def make_kernel(name: str | None = None, threads: int = 2) -> MvmKernel:
    """The MVM kernel called ``name`` (``auto``, ``numba``, ``numpy``; default: the environment
    variable ``CHIPCTL_MVM_KERNEL``, else ``auto``). ``auto`` is the compiled kernel when numba
    imports, else the numpy one; ``numba`` without numba is an error."""
    choice = (name or os.environ.get(KERNEL_ENV) or "auto").strip().lower()
    if choice not in KERNELS:
        raise ValueError(
            f"MVM kernel {choice!r} is not one of {', '.join(KERNELS)} (mockchip://?kernel=... "
            f"or {KERNEL_ENV})"
        )
    if choice != "numpy":
        try:
            from drivers.sim.mvm_numba import NumbaMvmKernel
        except ImportError:
            if choice == "numba":
                raise ValueError("MVM kernel 'numba' needs the numba package; install it") from None
        else:
            return NumbaMvmKernel(threads=threads)
    return NumpyMvmKernel(threads=threads)
