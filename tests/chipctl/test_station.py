"""Station files (errors name the key and the line), the safety limits (every refusal path) and
the default, fully simulated station."""

from __future__ import annotations

from pathlib import Path

import pytest

from chipctl.station import (
    DEFAULT_STATION_TOML,
    Limits,
    SafetyLimitError,
    StationFileError,
    default_station,
    load_station,
    parse_station,
    station_check,
)
from drivers.errors import LimitError


def limits() -> Limits:
    return parse_station(DEFAULT_STATION_TOML).limits


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


# -- station files ------------------------------------------------------------------------------


def test_the_default_station_file_is_valid() -> None:
    station = parse_station(DEFAULT_STATION_TOML)
    assert [rail.name for rail in station.rails] == ["vdd", "vddio", "vpcm"]
    assert station.simulated and station.instruments["smu"].model == "keithley2450"
    assert station.limits.step_dwell_s == pytest.approx(0.01)


def test_load_station_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "bench.toml"
    path.write_text(DEFAULT_STATION_TOML.replace("seed = 0", "seed = 4"), encoding="utf-8")
    assert load_station(path).simulation.seed == 4
    with pytest.raises(StationFileError, match="cannot read"):
        load_station(tmp_path / "missing.toml")


def test_toml_syntax_errors_give_the_line() -> None:
    text = DEFAULT_STATION_TOML.replace("ramp_step_v = 0.1", "ramp_step_v = = 0.1")
    with pytest.raises(StationFileError) as info:
        parse_station(text, "bench.toml")
    assert info.value.line == line_of(text, "ramp_step_v")
    assert f"bench.toml:{info.value.line}" in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "key", "needle"),
    [
        ("max_voltage_v = 0.9", 'max_voltage_v = "0.9"', "rails.vdd.max_voltage_v", '0.9"'),
        ("voltage_v = 0.8", "voltage_v = 0.95", "rails.vdd.voltage_v", "voltage_v = 0.95"),
        ("current_limit_a = 0.6", "current_limit_a = 1.5", "rails.vdd.current_limit_a", "1.5"),
        ("max_voltage_v = 1.98", "max_voltage_v = 30.0", "rails.vddio.max_voltage_v", "30.0"),
        ("channel = 3", "channel = 2", "rails.vpcm.channel", "channel = 2"),
        ("channel = 3", "channel = 4", "rails.vpcm.channel", "channel = 4"),
        ("ramp_step_v = 0.1", "ramp_step_v = -0.1", "limits.ramp_step_v", "-0.1"),
        (
            "max_programming_ua = 700.0",
            "max_programming_ua = 2000.0",
            "limits.max_programming_ua",
            "2000",
        ),
        (
            "temperature_window_c = [15.0, 60.0]",
            "temperature_window_c = [60.0, 15.0]",
            "limits.temperature_window_c",
            "[60.0",
        ),
        (
            'model = "lakeshore335"',
            'model = "keithley2450"',
            "instruments.chuck.model",
            'model = "keithley2450"\nresource = "simulated"\n\n[simulation]',
        ),
        ("seed = 0", "seeed = 0", "simulation.seeed", "seeed"),
        ("time_scale = 1.0", "time_scale = -1.0", "simulation.time_scale", "-1.0"),
    ],
)
def test_semantic_errors_name_the_key_and_line(old: str, new: str, key: str, needle: str) -> None:
    assert old in DEFAULT_STATION_TOML
    text = DEFAULT_STATION_TOML.replace(old, new, 1)
    with pytest.raises(StationFileError) as info:
        parse_station(text, "bench.toml")
    assert info.value.key == key, str(info.value)
    first_line = needle.split("\n")[0]
    matches = [n for n, line in enumerate(text.splitlines(), 1) if first_line in line]
    assert info.value.line in matches, (str(info.value), matches)


def test_missing_tables_and_keys() -> None:
    no_limits = DEFAULT_STATION_TOML.split("[limits]")[0]
    with pytest.raises(StationFileError, match=r"missing table \[limits\]"):
        parse_station(no_limits)
    no_chip = DEFAULT_STATION_TOML.replace('chip_id = "SIM-HERMES-0001"\n', "")
    with pytest.raises(StationFileError, match="missing key 'chip_id'") as info:
        parse_station(no_chip)
    assert info.value.line == line_of(no_chip, "[station]")
    no_smu = DEFAULT_STATION_TOML.replace("[instruments.smu]", "[instruments.probe]")
    with pytest.raises(StationFileError, match="missing instrument"):
        parse_station(no_smu)


# -- limits: every refusal path -----------------------------------------------------------------


def test_rail_within_limits_passes() -> None:
    limits().check_rail(1, 0.8, 0.5)


@pytest.mark.parametrize(
    ("channel", "volts", "amps", "limit"),
    [
        (1, 0.95, 0.1, "rails.vdd.max_voltage_v"),
        (1, -0.1, 0.1, "rails.vdd.max_voltage_v"),
        (1, float("nan"), 0.1, "rails.vdd.max_voltage_v"),
        (1, 0.8, 1.2, "rails.vdd.max_current_a"),
        (2, 1.8, 0.25, "rails.vddio.max_current_a"),
        (3, 3.4, 0.01, "rails.vpcm.max_voltage_v"),
        (4, 1.0, 0.1, "rails"),
    ],
)
def test_rail_refusals(channel: int, volts: float, amps: float, limit: str) -> None:
    with pytest.raises(SafetyLimitError) as info:
        limits().check_rail(channel, volts, amps)
    assert info.value.limit == limit
    assert limit in str(info.value)
    assert isinstance(info.value, LimitError) and isinstance(info.value, ValueError)


def test_ramp_steps_are_bounded_and_end_on_target() -> None:
    steps = limits().ramp_steps(2, 0.0, 1.8)
    assert len(steps) == 18 and steps[-1] == pytest.approx(1.8)
    assert max(abs(b - a) for a, b in zip([0.0, *steps], steps, strict=False)) <= 0.1 + 1e-12
    assert limits().ramp_steps(2, 1.8, 0.0)[-1] == 0.0


def test_a_ramp_whose_intermediate_step_would_violate_is_refused() -> None:
    # output 1 reads 1.2 V (above its 0.9 V limit) and is to go to 0.5 V: the first steps
    # (1.1, 1.0 V) would violate; the ramp is refused, not clipped to 0.9 V
    with pytest.raises(SafetyLimitError, match="refused at step 1") as info:
        limits().ramp_steps(1, 1.2, 0.5)
    assert info.value.limit == "rails.vdd.max_voltage_v"


def test_a_ramp_to_a_target_above_the_limit_is_refused_before_any_step() -> None:
    with pytest.raises(SafetyLimitError, match="step 10 of 10"):
        limits().ramp_steps(1, 0.0, 0.95)


def test_temperature_window() -> None:
    limits().check_temperature(25.0)
    for bad in (14.9, 60.5, float("nan")):
        with pytest.raises(SafetyLimitError) as info:
            limits().check_temperature(bad)
        assert info.value.limit == "limits.temperature_window_c"


def test_smu_limits() -> None:
    limits().check_smu(-0.5, 1e-4)
    with pytest.raises(SafetyLimitError, match="smu_max_voltage_v"):
        limits().check_smu(-1.5, 1e-4)
    with pytest.raises(SafetyLimitError, match="smu_max_current_a"):
        limits().check_smu(0.2, 2e-3)


def test_programming_refusals() -> None:
    limits().check_programming(700.0, True, 25.0)
    with pytest.raises(SafetyLimitError) as info:
        limits().check_programming(701.0, True, 25.0)
    assert info.value.limit == "limits.max_programming_ua"
    with pytest.raises(SafetyLimitError) as info:
        limits().check_programming(300.0, False, 25.0)
    assert info.value.limit == "rails"
    with pytest.raises(SafetyLimitError) as info:
        limits().check_programming(300.0, True, 70.0)
    assert info.value.limit == "limits.temperature_window_c"


# -- the default station ------------------------------------------------------------------------


def test_default_station_opens_checks_and_closes() -> None:
    station = default_station(board_url="mockchip://?seed=1&cores=1", time_scale=0.0)
    with station.open() as opened:
        simulator = opened.simulator
        rows = station_check(opened)
        assert not opened.rails_ok()  # rails are off
        assert 15.0 < opened.temperature_c() < 30.0
    items = [item for item, _, _ in rows]
    assert items[:3] == ["board", "smu", "supply"] and items[-1] == "chuck"
    assert any("E36312A" in identity for _, identity, _ in rows)
    assert opened.smu.closed and opened.supply.closed and opened.chuck.closed
    assert opened.board.link.closed
    assert simulator is not None and not any(t.is_alive() for t in simulator._threads)


# -- the CLI commands (wired into chipctl.cli by add_station_commands) --------------------------


def test_cli_station_power_and_device_iv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from chipctl.runfile import RunFile

    monkeypatch.chdir(tmp_path)
    from chipctl.cli.station import add_station_commands

    parser = argparse.ArgumentParser(prog="chipctl")
    add_station_commands(parser.add_subparsers(dest="command", required=True))
    path = tmp_path / "bench.toml"
    path.write_text(
        DEFAULT_STATION_TOML.replace("mockchip://?seed=1", "mockchip://?seed=1&cores=1").replace(
            "time_scale = 1.0", "time_scale = 0.0"
        ),
        encoding="utf-8",
    )

    def run(*argv: str) -> int:
        args = parser.parse_args(argv)
        return int(args.handler(args))

    assert run("station", "check", "--station", str(path)) == 0
    out = capsys.readouterr().out
    assert "SIM-HERMES-0001" in out and "rail vdd" in out and "LSCI,MODEL335" in out
    assert run("power", "up", "--station", str(path)) == 0
    out = capsys.readouterr().out
    assert "power up: success" in out and "rail vpcm" in out
    assert len(list((tmp_path / "runs").glob("power_up-*.h5"))) == 1
    iv_file = tmp_path / "iv.h5"
    argv = (
        "device-iv",
        "--station",
        str(path),
        "--power-up",
        "--pulses",
        "3",
        "--out",
        str(iv_file),
    )
    assert run(*argv) == 0
    out = capsys.readouterr().out
    assert "conductance from the I–V sweep" in out and out.count("pulse ") >= 3
    with RunFile.open(iv_file) as run_file:
        assert run_file.status == "success" and run_file.procedure == "device_iv"
    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT_STATION_TOML.replace("ramp_step_v = 0.1", "ramp_step_v = 0"))
    assert run("power", "down", "--station", str(bad)) == 2
    assert "limits.ramp_step_v" in capsys.readouterr().err


def test_chip_programming_is_interlocked_with_the_station() -> None:
    """Limits in one place: the board refuses PULSES while rails are off or amplitude too high."""
    from procedures.power import PowerUp

    station = default_station(board_url="mockchip://?seed=1&cores=1", time_scale=0.0)
    with station.open() as opened:
        board = opened.board
        sent = board.link.stats.frames_sent
        with pytest.raises(SafetyLimitError, match="rail") as refused:
            board.apply_pulses(0, 0, 0, 0, "set", 125, 250)
        assert refused.value.limit == "rails"
        assert board.link.stats.frames_sent == sent  # nothing reached the board
        assert list(PowerUp(station=opened).run(board))[-1].status == "success"
        assert board.apply_pulses(0, 0, 0, 0, "set", 125, 250) == 1
        sent = board.link.stats.frames_sent
        with pytest.raises(SafetyLimitError, match="max_programming_ua"):
            board.apply_pulses(
                0, 0, 0, 0, "partial", int(opened.limits.max_programming_ua) + 1, 125
            )
        assert board.link.stats.frames_sent == sent


def test_the_simulated_test_device_follows_the_chips_device_model() -> None:
    """``mockchip://?devices=pcmlike`` selects the physics of the chip and of the SMU's test
    device alike (one device model, drivers/sim/devices.py)."""
    from chipctl.station.connect import board_device_model
    from drivers.sim.devices import HermesPcm, PcmLike

    assert board_device_model("mockchip://?seed=2&devices=pcmlike") == "pcmlike"
    assert board_device_model("mockchip://?seed=2") == "hermes"
    assert board_device_model("socket://127.0.0.1:5555") == "hermes"
    for url, model in (
        ("mockchip://?seed=2&cores=1&devices=pcmlike", PcmLike),
        ("mockchip://?seed=2&cores=1", HermesPcm),
    ):
        with default_station(board_url=url, time_scale=0.0).open() as opened:
            assert type(opened.simulator.device.model) is model
