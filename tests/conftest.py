"""Suite-wide fixtures: no test writes into the checkout's calibration store.

Front ends store a calibrate run's set (its catalog entry's post-run step) in the default
store; during the tests that is a session copy of ``calibration_data/`` (the simulated chip's
factory set included), so the checkout stays as it was.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHECKOUT_STORE = Path(__file__).resolve().parents[1] / "calibration_data"


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
