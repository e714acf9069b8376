"""The root of every error chipctl raises: ``except ChipctlError`` catches them all.

Each error also derives from the builtin it behaves like (``ValueError`` for bad input,
``OSError`` for files), so code written against the builtins keeps working.
"""

from __future__ import annotations


class ChipctlError(Exception):
    """Root class of chipctl's own errors (run files, recipes, stations, catalog, sweeps)."""
