"""Station files (errors name the key and the line), the safety limits (every refusal path) and
the default, fully simulated station."""

from __future__ import annotations

import dataclasses
import itertools
import re
import time
from collections.abc import Iterator, Sized
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


# Every limit against its instrument's rating and its physical range: (id, replacements,
# key, the line's text, the value and the rating as the message must name them).
RATING_CASES: list[tuple[str, list[tuple[str, str]], str, str, str, str]] = [
    (
        "smu-current-above-the-2450-rating",
        [("smu_max_current_a = 1e-3", "smu_max_current_a = 100.0")],
        "limits.smu_max_current_a",
        "smu_max_current_a = 100.0",
        "100 A",
        "exceeds the Keithley 2450's rating 1.05 A",
    ),
    (
        "smu-voltage-above-the-2450-rating",
        [("smu_max_voltage_v = 1.0", "smu_max_voltage_v = 1e6")],
        "limits.smu_max_voltage_v",
        "smu_max_voltage_v = 1e6",
        "1e+06 V",
        "exceeds the Keithley 2450's rating 210 V",
    ),
    (
        "smu-outside-the-2450-power-envelope",
        [
            ("smu_max_voltage_v = 1.0", "smu_max_voltage_v = 100.0"),
            ("smu_max_current_a = 1e-3", "smu_max_current_a = 0.5"),
        ],
        "limits.smu_max_current_a",
        "smu_max_current_a = 0.5",
        "0.5 A at smu_max_voltage_v = 100 V",
        "Keithley 2450's power rating 0.105 A at that voltage",
    ),
    (
        "smu-current-below-the-smallest-2450-limit",
        [("smu_max_current_a = 1e-3", "smu_max_current_a = 1e-12")],
        "limits.smu_max_current_a",
        "smu_max_current_a = 1e-12",
        "1e-12 A",
        "Keithley 2450's smallest current limit 1e-09 A",
    ),
    (
        "programming-above-the-pulse-range",
        [("max_programming_ua = 700.0", "max_programming_ua = 2000.0")],
        "limits.max_programming_ua",
        "max_programming_ua = 2000.0",
        "2000 µA",
        "exceeds the SMU pulse range, 1050 µA",
    ),
    (
        "temperature-below-absolute-zero",
        [("temperature_window_c = [15.0, 60.0]", "temperature_window_c = [-500.0, 5000.0]")],
        "limits.temperature_window_c",
        "temperature_window_c = [-500.0",
        "low -500 °C",
        "below absolute zero, -273.15 °C",
    ),
    (
        "temperature-above-the-335-setpoint-rating",
        [("temperature_window_c = [15.0, 60.0]", "temperature_window_c = [15.0, 5000.0]")],
        "limits.temperature_window_c",
        "temperature_window_c = [15.0, 5000.0]",
        "high 5000 °C",
        "Lake Shore 335's setpoint rating -273.15 … 1226.85 °C (0 … 1500 K)",
    ),
    (
        "temperature-outside-the-chuck-range",
        [("temperature_window_c = [15.0, 60.0]", "temperature_window_c = [15.0, 400.0]")],
        "limits.temperature_window_c",
        "temperature_window_c = [15.0, 400.0]",
        "high 400 °C",
        "outside the chuck range -65 … 300 °C",
    ),
    (
        "temperature-not-finite",
        [("temperature_window_c = [15.0, 60.0]", "temperature_window_c = [-inf, 60.0]")],
        "limits.temperature_window_c",
        "temperature_window_c = [-inf, 60.0]",
        "low -inf °C",
        "not finite",
    ),
    (
        "ramp-step-jumps-a-rail-in-one-step",
        [("ramp_step_v = 0.1", "ramp_step_v = 100.0")],
        "limits.ramp_step_v",
        "ramp_step_v = 100.0",
        "100 V",
        "larger than rail vdd's voltage_v = 0.8 V",
    ),
    (
        "ramp-step-below-1-mV",
        [("ramp_step_v = 0.1", "ramp_step_v = 1e-9")],
        "limits.ramp_step_v",
        "ramp_step_v = 1e-9",
        "1e-09 V",
        "below the smallest ramp step 0.001 V",
    ),
    (
        "ramp-step-too-many-steps-on-a-25-V-rail",
        [
            ("ramp_step_v = 0.1", "ramp_step_v = 0.002"),
            ("max_voltage_v = 1.98", "max_voltage_v = 25.0"),
        ],
        "limits.ramp_step_v",
        "ramp_step_v = 0.002",
        "0.002 V",
        "below 0.0025 V: a ramp to 25 V may take at most 10000 steps",
    ),
    (
        "ramp-rate-too-fast",
        [("ramp_rate_v_per_s = 10.0", "ramp_rate_v_per_s = 1e9")],
        "limits.ramp_rate_v_per_s",
        "ramp_rate_v_per_s = 1e9",
        "1e+09 V/s",
        "physical range 0.001 … 1000 V/s",
    ),
    (
        "ramp-rate-so-slow-a-ramp-takes-an-hour",
        [("ramp_rate_v_per_s = 10.0", "ramp_rate_v_per_s = 0.001")],
        "limits.ramp_rate_v_per_s",
        "ramp_rate_v_per_s = 0.001",
        "0.001 V/s",
        "a ramp may take at most 10 min",
    ),
    (
        "readback-tolerance-wider-than-10-percent-of-the-setpoint",
        [("readback_tolerance_v = 0.02", "readback_tolerance_v = 0.5")],
        "rails.vdd.readback_tolerance_v",
        "readback_tolerance_v = 0.5",
        "0.5 V",
        "more than 10% of the setpoint voltage_v = 0.8 V",
    ),
    (
        "readback-tolerance-below-1-mV",
        [("readback_tolerance_v = 0.02", "readback_tolerance_v = 1e-6")],
        "rails.vdd.readback_tolerance_v",
        "readback_tolerance_v = 1e-6",
        "1e-06 V",
        "below the smallest readback tolerance 0.001 V",
    ),
    (
        "rail-voltage-above-the-E36312A-output-rating",
        [("max_voltage_v = 0.9", "max_voltage_v = 9.0")],
        "rails.vdd.max_voltage_v",
        "max_voltage_v = 9.0",
        "9 V",
        "Keysight E36312A's 6 V on output 1",
    ),
    (
        "rail-current-above-the-E36312A-output-rating",
        [("max_current_a = 0.2", "max_current_a = 3.0")],
        "rails.vddio.max_current_a",
        "max_current_a = 3.0",
        "3 A",
        "Keysight E36312A's 1 A on output 2",
    ),
]


def _station_text(replacements: list[tuple[str, str]]) -> str:
    text = DEFAULT_STATION_TOML
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize(
    ("replacements", "key", "needle", "value", "rating"),
    [pytest.param(*case[1:], id=case[0]) for case in RATING_CASES],
)
def test_limits_beyond_ratings_or_physics_are_refused_by_load_station(
    tmp_path: Path,
    replacements: list[tuple[str, str]],
    key: str,
    needle: str,
    value: str,
    rating: str,
) -> None:
    text = _station_text(replacements)
    path = tmp_path / "station.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StationFileError) as info:
        load_station(path)
    message = str(info.value)
    assert info.value.key == key, message
    assert info.value.line == line_of(text, needle), message
    assert message.startswith(f"{path}:{info.value.line}: [{key}] "), message
    assert value in message and rating in message, message


@pytest.mark.parametrize(
    ("replacements", "key", "needle", "value", "rating"),
    [pytest.param(*case[1:], id=case[0]) for case in RATING_CASES],
)
def test_limits_beyond_ratings_or_physics_fail_station_check_with_exit_code_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    replacements: list[tuple[str, str]],
    key: str,
    needle: str,
    value: str,
    rating: str,
) -> None:
    from chipctl.cli import main

    text = _station_text(replacements)
    path = tmp_path / "station.toml"
    path.write_text(text, encoding="utf-8")
    assert main(["station", "check", "--station", str(path)]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert f"{path}:{line_of(text, needle)}: [{key}]" in err, err
    assert value in err and rating in err, err
    assert "Traceback" not in err and captured.out == ""


def test_the_default_station_is_within_every_rating() -> None:
    from chipctl.station.limits import limit_problems

    assert limit_problems(parse_station(DEFAULT_STATION_TOML).limits) == []
    assert limit_problems(default_station().limits) == []


NOT_TEXT: list[tuple[str, bytes]] = [
    (
        "latin-1",
        DEFAULT_STATION_TOML.replace("[limits]", "# Kühlung 15 °C\n[limits]").encode("latin-1"),
    ),
    ("utf-16", DEFAULT_STATION_TOML.encode("utf-16")),
    ("binary", bytes(range(256)) * 8),
    ("png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)),
]


@pytest.mark.parametrize("content", [pytest.param(c, id=n) for n, c in NOT_TEXT])
def test_a_station_file_that_is_not_utf8_text_is_refused_clearly(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "bench.toml"
    path.write_bytes(content)
    with pytest.raises(StationFileError, match="not a UTF-8 text file") as info:
        load_station(path)
    assert str(info.value).startswith(str(path))
    assert not isinstance(info.value, UnicodeDecodeError)


def test_a_non_utf8_byte_is_reported_with_its_line(tmp_path: Path) -> None:
    text = DEFAULT_STATION_TOML.replace("[limits]", "# Kühlung 15 °C\n[limits]")
    path = tmp_path / "bench.toml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(StationFileError, match=r"byte 0xfc") as info:
        load_station(path)
    assert info.value.line == line_of(text, "Kühlung")


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bench.toml"
    path.write_bytes(DEFAULT_STATION_TOML.encode("utf-8-sig"))
    assert load_station(path).chip_id == "SIM-HERMES-0001"


def test_an_oversized_station_file_is_refused_unread(tmp_path: Path) -> None:
    from chipctl.station.file import MAX_STATION_FILE_BYTES

    path = tmp_path / "bench.toml"
    path.write_bytes(b"#" * (MAX_STATION_FILE_BYTES + 10))
    with pytest.raises(StationFileError, match="larger than"):
        load_station(path)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["station", "check"], id="station-check"),
        pytest.param(["power", "up"], id="power-up"),
        pytest.param(["power", "down"], id="power-down"),
        pytest.param(["tui"], id="tui"),
    ],
)
@pytest.mark.parametrize("content", [pytest.param(c, id=n) for n, c in NOT_TEXT[::2]])
def test_commands_given_a_non_utf8_station_file_exit_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], content: bytes
) -> None:
    from chipctl.cli import main

    path = tmp_path / "bench.toml"
    path.write_bytes(content)
    assert main([*argv, "--station", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "not a UTF-8 text file" in err, err
    assert "Traceback" not in err


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
    steps = list(limits().ramp_steps(2, 0.0, 1.8))
    assert len(steps) == 18 and steps[-1] == pytest.approx(1.8)
    assert max(abs(b - a) for a, b in zip([0.0, *steps], steps, strict=False)) <= 0.1 + 1e-12
    assert list(limits().ramp_steps(2, 1.8, 0.0))[-1] == 0.0


def test_ramp_steps_are_generated_lazily() -> None:
    """A tiny step (1 nV: 1.8e9 setpoints) builds no list: taking the first few is instant."""
    tiny = dataclasses.replace(limits(), ramp_step_v=1e-9)
    began = time.perf_counter()
    steps = tiny.ramp_steps(2, 0.0, 1.8)
    first = list(itertools.islice(steps, 3))
    assert time.perf_counter() - began < 0.5
    assert isinstance(steps, Iterator) and not isinstance(steps, Sized)
    assert first == pytest.approx([1e-9, 2e-9, 3e-9])
    assert next(steps) == pytest.approx(4e-9)


def test_a_lazy_ramp_is_still_checked_whole_before_the_first_setpoint() -> None:
    # 950 million steps to 0.95 V on a 0.9 V rail: the first bad one is found without walking
    tiny = dataclasses.replace(limits(), ramp_step_v=1e-9)
    began = time.perf_counter()
    with pytest.raises(SafetyLimitError, match=r"refused at step (\d+) of 950000000") as info:
        tiny.ramp_steps(1, 0.0, 0.95)
    assert time.perf_counter() - began < 0.5
    assert info.value.limit == "rails.vdd.max_voltage_v"
    step = re.search(r"step (\d+) of", str(info.value))
    assert step is not None
    first_bad = int(step.group(1))
    assert first_bad * 1e-9 > 0.9 >= (first_bad - 1) * 1e-9 - 1e-12
    with pytest.raises(SafetyLimitError, match="refused at step 1 of"):
        tiny.ramp_steps(1, 1.2, 0.5)


def test_limits_refuse_a_step_that_is_not_a_finite_positive_number() -> None:
    for bad in (0.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(SafetyLimitError) as info:
            dataclasses.replace(limits(), ramp_step_v=bad)
        assert info.value.limit == "limits.ramp_step_v"


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
