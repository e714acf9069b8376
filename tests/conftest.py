"""Suite-wide fixtures: no test writes into the checkout's calibration store.

Front ends store a calibrate run's set (its catalog entry's post-run step) in the default
store; during the tests that is a session copy of ``calibration_data/`` (the simulated chip's
factory set included), so the checkout stays as it was. (Each xdist worker is a session of its
own: its own copy.)

The long tests run first (:func:`pytest_collection_modifyitems`): the suite runs on two xdist
workers (pyproject.toml) that take one test at a time in collection order, so a long test
started last would keep one worker busy while the other is idle.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHECKOUT_STORE = Path(__file__).resolve().parents[1] / "calibration_data"

LONG_UNMARKED = (
    "tests/test_code_quality.py::test_mypy_drivers_procedures_and_chipctl",
    "tests/chipctl/test_inference.py::test_lstm_accuracy_targets",
)
"""Tests of 15 s or more not marked ``slow``, started early like the ``slow`` ones."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``slow`` tests (and :data:`LONG_UNMARKED`) first, each group in collection order."""
    items.sort(
        key=lambda item: not (item.get_closest_marker("slow") or item.nodeid in LONG_UNMARKED)
    )


@pytest.fixture(scope="session")
def _session_calibration_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("calibration") / "calibration_data"
    shutil.copytree(CHECKOUT_STORE, store)
    return store


@pytest.fixture(autouse=True)
def _calibration_store_outside_the_checkout(
    _session_calibration_store: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setenv("CHIPCTL_CALIBRATION_DIR", str(_session_calibration_store))
    yield
