"""Simulated HERMES-class PCM analog in-memory-computing chip and its board model.

Physics modules (numbers and sources in ``reference/chip.md``):

- :mod:`drivers.sim.clock`: the one virtual clock (chip and station) and a real-time clock.
- :mod:`drivers.sim.devices`: device models (ν, drift, relaxation, read noise), selected by the
  URL option ``devices=``: HERMES fits (default) and aihwkit's PCMLike statistics.
- :mod:`drivers.sim.physics`: ``HermesStatistics``, the earlier name of the HERMES model.
- :mod:`drivers.sim.pulses`: pulse-level programming model (RESET / SET / partial pulses).
- :mod:`drivers.sim.adc`: per-row current-controlled-oscillator ADC bank.
- :mod:`drivers.sim.ldpu`: the float16 LDPU chain.
- :mod:`drivers.sim.fastnormal`: fast standard-normal sampling from an injected Generator.
- :mod:`drivers.sim.mvm`: the MVM kernel seam and its numpy implementation.
- :mod:`drivers.sim.mvm_numba`: the compiled MVM kernel (numba).
- :mod:`drivers.sim.mvm_choice`: which MVM kernel the chip uses.
- :mod:`drivers.sim.threads`: the worker pool and OpenBLAS thread control.
- :mod:`drivers.sim.chip`: :class:`~drivers.sim.chip.SimulatedChip`, the chip behind the board.

Nothing heavy is imported here, so importing a submodule stays cheap.
"""
