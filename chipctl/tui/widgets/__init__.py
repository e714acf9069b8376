"""Reusable widgets of the chipctl TUI."""
