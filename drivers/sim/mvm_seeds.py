"""The simulated chip's MVM noise streams, re-seeded from (core, time) in a few microseconds.

On a virtual clock a core's MVM noise comes from ``SeedSequence(entropy, spawn_key=(*key,
ticks))`` (:meth:`drivers.sim.chip.SimulatedChip._mvm_stream`): the clock moves at every MVM,
so a generator is made for almost every core of every call. numpy makes it in about 20 µs,
mostly in ``SeedSequence``'s entropy mixing and ``generate_state``, run in Python-level code;
on a call to eleven cores that is 0.2 ms. :class:`TimedSeedSequence` gives the same words from
compiled code (the same algorithm: O'Neill's seed_seq hash as numpy implements it, pool of four
32-bit words), so ``PCG64(TimedSeedSequence(...))`` is bit-identical to ``PCG64(SeedSequence(...))``
(tested on random entropies, spawn keys and times, including times past 2³² ns). ``spawn``
goes to a real ``SeedSequence`` made on first use, so child generators are numpy's too.

The words of the fixed part (the chip's entropy and the core's spawn key) are found once per
core by :func:`stream_factory`, which checks them against numpy's own pool and falls back on
``SeedSequence`` for an entropy it cannot reproduce (and when numba is missing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.random.bit_generator import ISpawnableSeedSequence

_MASK32 = 0xFFFFFFFF
_POOL = 4

try:
    import numba
except ImportError:  # the numpy kernel runs without numba: numpy's SeedSequence then
    numba = None  # type: ignore[assignment]

if numba is not None:
    _jit: Any = numba.njit(cache=True, nogil=True)

    @_jit
    def _hashmix(value: np.uint32, hash_const: np.ndarray) -> np.uint32:
        value = np.uint32(value ^ hash_const[0])
        hash_const[0] = np.uint32(hash_const[0] * np.uint32(0x931E8875))
        value = np.uint32(value * hash_const[0])
        return np.uint32(value ^ (value >> np.uint32(16)))

    @_jit
    def _mix(x: np.uint32, y: np.uint32) -> np.uint32:
        result = np.uint32(np.uint32(0xCA01F9DD) * x - np.uint32(0x4973F715) * y)
        return np.uint32(result ^ (result >> np.uint32(16)))

    @_jit
    def _pool_of(entropy: np.ndarray) -> np.ndarray:
        """The seed_seq pool (4 words) of an assembled entropy (uint32 words)."""
        hash_const = np.full(1, np.uint32(0x43B0D7E5), np.uint32)
        pool = np.zeros(_POOL, np.uint32)
        for i in range(_POOL):
            word = entropy[i] if i < entropy.size else np.uint32(0)
            pool[i] = _hashmix(word, hash_const)
        for i_src in range(_POOL):
            for i_dst in range(_POOL):
                if i_src != i_dst:
                    pool[i_dst] = _mix(pool[i_dst], _hashmix(pool[i_src], hash_const))
        for i_src in range(_POOL, entropy.size):
            for i_dst in range(_POOL):
                pool[i_dst] = _mix(pool[i_dst], _hashmix(entropy[i_src], hash_const))
        return pool

    @_jit
    def _timed_state(prefix: np.ndarray, ticks: int, n_words: int) -> np.ndarray:
        """``generate_state(n_words, uint32)`` of the entropy ``prefix`` + the words of
        ``ticks`` (low word first; one zero word for 0)."""
        n_tick_words = 1
        while ticks >> (32 * n_tick_words) > 0:
            n_tick_words += 1
        entropy = np.empty(prefix.size + n_tick_words, np.uint32)
        for i in range(prefix.size):  # element loops: a slice assignment compiles shape checks
            entropy[i] = prefix[i]
        for i in range(n_tick_words):
            entropy[prefix.size + i] = np.uint32((ticks >> (32 * i)) & _MASK32)
        pool = _pool_of(entropy)
        state = np.empty(n_words, np.uint32)
        hash_const = np.uint32(0x8B51F9DD)
        for i in range(n_words):
            value = np.uint32(pool[i % _POOL] ^ hash_const)
            hash_const = np.uint32(hash_const * np.uint32(0x58F38DED))
            value = np.uint32(value * hash_const)
            state[i] = np.uint32(value ^ (value >> np.uint32(16)))
        return state


def _uint32_words(value: object) -> list[int]:
    """numpy's coercion of seed entropy to 32-bit words (low word first), for the kinds of
    entropy a chip is seeded with: non-negative ints and (nested) sequences of them."""
    if isinstance(value, bool):
        raise TypeError("not an entropy this module reproduces")
    if isinstance(value, int | np.integer):
        n = int(value)
        if n < 0:
            raise ValueError("negative entropy")
        words = [n & _MASK32]
        n >>= 32
        while n > 0:
            words.append(n & _MASK32)
            n >>= 32
        return words
    if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str | bytes):
        return [w for v in value for w in _uint32_words(v)]
    raise TypeError("not an entropy this module reproduces")


class TimedSeedSequence(ISpawnableSeedSequence):
    """``SeedSequence(base.entropy, spawn_key=(*base.spawn_key, ticks))``, its state words
    made by compiled code (module docstring); ``prefix`` the words of the fixed part."""

    __slots__ = ("_base", "_prefix", "_ticks", "_sequence")

    def __init__(self, base: np.random.SeedSequence, prefix: np.ndarray, ticks: int) -> None:
        self._base = base
        self._prefix = prefix
        self._ticks = ticks
        self._sequence: np.random.SeedSequence | None = None

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        """``n_words`` seed words, uint32 or uint64, as numpy's ``SeedSequence`` gives them."""
        wide = np.dtype(dtype) == np.dtype(np.uint64)
        if not wide and np.dtype(dtype) != np.dtype(np.uint32):
            raise ValueError("only support uint32 or uint64")
        words = _timed_state(self._prefix, self._ticks, 2 * n_words if wide else n_words)
        return words.astype("<u4").view("<u8").astype(np.uint64) if wide else words

    def spawn(self, n_children: int) -> list[np.random.SeedSequence]:  # type: ignore[override]
        """``n_children`` child sequences of the numpy ``SeedSequence`` this stands for."""
        # numpy's children (SeedSequence, not this class): what the real sequence would give
        return self.sequence.spawn(n_children)

    @property
    def sequence(self) -> np.random.SeedSequence:
        """The numpy ``SeedSequence`` this stands for (made on first use, then kept)."""
        if self._sequence is None:
            base = self._base
            self._sequence = np.random.SeedSequence(
                base.entropy, spawn_key=(*base.spawn_key, self._ticks), pool_size=base.pool_size
            )
        return self._sequence


def stream_factory(base: np.random.SeedSequence) -> Callable[[int], np.random.Generator]:
    """A maker of the generator ``PCG64(SeedSequence(base.entropy, spawn_key=(*base.spawn_key,
    ticks)))`` for a time in ticks: compiled when the base's words can be reproduced (checked
    against numpy's pool), else numpy's ``SeedSequence`` itself."""

    def slow(ticks: int) -> np.random.Generator:
        sequence = np.random.SeedSequence(base.entropy, spawn_key=(*base.spawn_key, ticks))
        return np.random.Generator(np.random.PCG64(sequence))

    if numba is None or base.pool_size != _POOL:
        return slow
    try:
        run = _uint32_words(base.entropy)
        spawn = _uint32_words(tuple(base.spawn_key))
    except (TypeError, ValueError):
        return slow
    if spawn:
        run += [0] * max(0, _POOL - len(run))  # numpy pads a spawned sequence's run entropy
    prefix = np.array(run + spawn, np.uint32)
    probe = np.random.SeedSequence(base.entropy, spawn_key=(*base.spawn_key, 0))
    if not np.array_equal(_pool_of(np.append(prefix, np.uint32(0))), probe.pool):
        return slow

    def fast(ticks: int) -> np.random.Generator:
        if ticks < 0 or ticks >= 2**63:
            return slow(ticks)
        sequence = TimedSeedSequence(base, prefix, ticks)
        return np.random.Generator(np.random.PCG64(sequence))  # type: ignore[arg-type]

    return fast
