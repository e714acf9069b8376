"""The HERMES statistics under their earlier name (device models: :mod:`drivers.sim.devices`).

``HermesStatistics(num_devices)`` is :class:`drivers.sim.devices.HermesPcm`: the fits of
aihwkit's ``HermesNoiseModel`` [AK hermes.py; chip.md §3] for one (ODP) or two (TDP) devices
per polarity, with the read-noise and drift equations of :class:`~drivers.sim.devices.DeviceModel`.
Kept so that tests and analyses that compare against "the HERMES numbers" need not know which
device model a simulated chip runs.
"""

from __future__ import annotations

from drivers.sim.devices import HermesPcm

HermesStatistics = HermesPcm
"""HERMES-fitted device statistics (an alias of :class:`drivers.sim.devices.HermesPcm`)."""
