"""The instrument drivers' rating metadata: declared on the class, documented with a source, and
the same figures the drivers' own strict validators use (a station's limits are checked
against these, see chipctl.station.limits)."""

from __future__ import annotations

import pytest

from drivers.instruments import Keithley2450, KeysightE36312A, LakeShore335
from drivers.instruments.keysight_e36312a import SupplyChannel


def test_every_driver_declares_its_model_name_and_documents_its_ratings() -> None:
    for driver in (Keithley2450, KeysightE36312A, LakeShore335):
        assert isinstance(driver.MODEL_NAME, str) and driver.MODEL_NAME
        assert driver.__doc__ is not None and "Ratings" in driver.__doc__
        assert "datasheet" in driver.__doc__ or "manual" in driver.__doc__


def test_keithley2450_ratings_match_its_validators() -> None:
    assert Keithley2450.RATED_VOLTAGE_V == 210.0
    assert Keithley2450.RATED_CURRENT_A == 1.05
    assert Keithley2450.source_voltage_v.values == (-210.0, 210.0)
    assert Keithley2450.source_current_a.values == (-1.05, 1.05)
    assert Keithley2450.current_limit_a.values == (Keithley2450.RATED_MIN_CURRENT_LIMIT_A, 1.05)
    assert Keithley2450.RATED_PULSE_CURRENT_A == 1.05e-3
    # the envelope: corners in increasing voltage, ending at the voltage rating
    corners = Keithley2450.RATED_ENVELOPE
    assert [v for v, _ in corners] == sorted(v for v, _ in corners)
    assert corners[-1][0] == Keithley2450.RATED_VOLTAGE_V
    assert max(a for _, a in corners) == Keithley2450.RATED_CURRENT_A


@pytest.mark.parametrize(
    ("volts", "amps"),
    [(0.0, 1.05), (-21.0, 1.05), (21.5, 0.105), (-210.0, 0.105), (210.5, 0.0)],
)
def test_keithley2450_rated_current_follows_the_power_envelope(volts: float, amps: float) -> None:
    assert Keithley2450.rated_current_at(volts) == amps


def test_e36312a_ratings_match_its_channel_validators() -> None:
    assert dict(KeysightE36312A.CHANNEL_RATINGS) == {1: (6.0, 5.0), 2: (25.0, 1.0), 3: (25.0, 1.0)}
    assert set(KeysightE36312A.CHANNEL_RATINGS) == set(KeysightE36312A.CHANNEL_IDS)
    for channel_id, (volts, amps) in KeysightE36312A.CHANNEL_RATINGS.items():
        channel = SupplyChannel.__new__(SupplyChannel)
        channel.id = channel_id
        assert SupplyChannel.voltage_setpoint_v.values(channel) == (0.0, volts)
        assert SupplyChannel.current_limit_a.values(channel) == (0.0, amps)


def test_lakeshore335_ratings_match_its_setpoint_validator() -> None:
    assert LakeShore335.RATED_SETPOINT_K == (0.0, 1500.0)
    assert LakeShore335.setpoint_k.values == LakeShore335.RATED_SETPOINT_K
    low, high = LakeShore335.RATED_SENSOR_K
    assert 0.0 < low < high
