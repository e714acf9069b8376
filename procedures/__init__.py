"""Measurement logic that drives a ``drivers.board.Board``; numpy and drivers only.

Procedures never touch files or screens (no h5py, no textual, no chipctl imports).
"""
