"""chipctl: control stack for a 64-core PCM analog in-memory-computing test chip.

What people run and import: the CLI (``chipctl``), the demo, and later the runner, run files,
calibration store and TUI. The only layer that touches files and screens.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("chipctl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

DEFAULT_BOARD_URL = "mockchip://?seed=1"
"""The built-in simulated chip."""
