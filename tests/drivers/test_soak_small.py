"""Reduced link soak (issue 8; ``python -m benchmarks soak`` is the full one): MVMs through
``socket://`` with byte corruption 1e-4 return exactly the clean-link results."""

from __future__ import annotations

import pytest

from benchmarks.soak import run

N_MVMS = 2_000


@pytest.mark.slow
def test_soak_corruption_is_always_detected_and_retried() -> None:
    figures = run(N_MVMS)
    assert figures["undetected"] == 0, figures
    assert figures["failed"] == 0, figures
    assert figures["detected"] > 0, figures  # at 1e-4 per byte, about 1 MVM in 8 is hit
    assert figures["retried"] >= figures["detected"], figures
    assert figures["distinct_results"] > N_MVMS // 2, figures  # results are not all equal
