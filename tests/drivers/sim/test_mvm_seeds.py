"""The compiled re-seeding of the MVM noise streams is numpy's SeedSequence, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.sim import mvm_seeds
from drivers.sim.mvm_seeds import TimedSeedSequence, stream_factory

TICKS = [0, 1, 2**32 - 1, 2**32, 2**40 + 5, 25 * 10**9, 86_400 * 10**9, 2**62 + 7]


def _numpys(base: np.random.SeedSequence, ticks: int) -> np.random.Generator:
    sequence = np.random.SeedSequence(base.entropy, spawn_key=(*base.spawn_key, ticks))
    return np.random.Generator(np.random.PCG64(sequence))


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**40 + 3, 2**128 - 1, [16, 3], [2**33, 0, 7], None])
def test_streams_are_numpys(seed: object) -> None:
    """Raw words, normals and spawned children equal numpy's for chip-like seeds (spawned
    generators, as the chip makes them) over times below and past 2³² and 2⁶⁴ ns words."""
    for generator in np.random.default_rng(seed).spawn(3):  # type: ignore[arg-type]
        base = generator.bit_generator.seed_seq
        assert isinstance(base, np.random.SeedSequence)
        make = stream_factory(base)
        for ticks in TICKS:
            mine, theirs = make(ticks), _numpys(base, ticks)
            assert isinstance(mine.bit_generator.seed_seq, TimedSeedSequence)
            np.testing.assert_array_equal(
                mine.bit_generator.random_raw(4), theirs.bit_generator.random_raw(4)
            )
            np.testing.assert_array_equal(mine.normal(size=5), theirs.normal(size=5))
            a, b = mine.spawn(2), theirs.spawn(2)
            assert [g.integers(2**62) for g in a] == [g.integers(2**62) for g in b]


def test_state_words_in_both_widths() -> None:
    base = np.random.SeedSequence(99, spawn_key=(4, 1))
    timed = TimedSeedSequence(base, np.array([99, 0, 0, 0, 4, 1], np.uint32), 2**35 + 9)
    real = np.random.SeedSequence(99, spawn_key=(4, 1, 2**35 + 9))
    for n, dtype in ((7, np.uint32), (4, np.uint64)):
        np.testing.assert_array_equal(timed.generate_state(n, dtype), real.generate_state(n, dtype))
    with pytest.raises(ValueError, match="uint32 or uint64"):
        timed.generate_state(2, np.int64)


def test_words_that_do_not_match_numpys_pool_fall_back_on_numpy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fixed words are checked against numpy's pool: a coercion that got them wrong (made
    wrong here on purpose), or no numba, gives numpy's SeedSequence, so the same stream."""
    base = np.random.SeedSequence(5, spawn_key=(2,))
    assert isinstance(stream_factory(base)(7).bit_generator.seed_seq, TimedSeedSequence)
    monkeypatch.setattr(mvm_seeds, "_uint32_words", lambda value: [1, 2, 3])
    make = stream_factory(base)
    assert not isinstance(make(7).bit_generator.seed_seq, TimedSeedSequence)
    np.testing.assert_array_equal(make(7).random(3), _numpys(base, 7).random(3))
    monkeypatch.undo()
    monkeypatch.setattr(mvm_seeds, "numba", None)
    assert not isinstance(stream_factory(base)(7).bit_generator.seed_seq, TimedSeedSequence)
