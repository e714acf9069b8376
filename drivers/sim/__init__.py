"""Simulated HERMES-class PCM analog in-memory-computing chip and its board model.

Physics modules (numbers and sources in ``reference/chip.md``):

- :mod:`drivers.sim.clock`: virtual and real-time clocks injected into the chip.
- :mod:`drivers.sim.physics`: HERMES statistical fits (programming noise, drift, read noise).
- :mod:`drivers.sim.pulses`: pulse-level programming model (RESET / SET / partial pulses).
- :mod:`drivers.sim.adc`: per-row current-controlled-oscillator ADC bank.
- :mod:`drivers.sim.ldpu`: the float16 LDPU chain.
- :mod:`drivers.sim.fastnormal`: fast standard-normal sampling from an injected Generator.
- :mod:`drivers.sim.chip`: :class:`~drivers.sim.chip.SimulatedChip`, the chip behind the board.

Nothing heavy is imported here, so importing a submodule stays cheap.
"""
