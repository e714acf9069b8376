"""The simulated FPGA board: decodes request frames, runs them on the simulated chip, replies.

The same :class:`SimulatedBoard` serves the in-process ``mockchip://`` port and the TCP server
(``chipctl sim serve``), so both speak exactly the protocol of docs/protocol.md. It validates
every request again, as a real board's firmware must, and keeps the duplicate memory and boot
identifier that make host retries safe (docs/protocol.md §2).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from drivers.errors import LimitError
from drivers.link.payloads import (
    OUTPUT_LDPU,
    OUTPUT_RAW,
    REPLIES,
    REQUESTS,
    BoardIdentity,
    BoardStatus,
    BootId,
    ChipGeometry,
    ClockAdvance,
    ClockTime,
    CoreId,
    DieTemperature,
    Empty,
    ErrorRegister,
    LdpuTable,
    MvmReply,
    MvmRequest,
    Payload,
    PayloadError,
    PulseBatch,
    PulsesApplied,
    ReadBatch,
    ReadCounts,
    RegisterAddress,
    RegisterValue,
    holds_int8_min,
)
from drivers.link.protocol import (
    MAX_CLOCK_ADVANCE_S,
    MAX_PAYLOAD,
    VERSION,
    BadHeader,
    Command,
    CorruptFrame,
    ErrorCode,
    Flags,
    Frame,
    FrameDecoder,
    Register,
    encode_chunks,
    encode_error,
    payload_crc,
)
from drivers.sim.chip import COLS, DEVICES, ROWS, SimulatedChip
from drivers.sim.clock import RealTimeClock, VirtualClock
from drivers.sim.devices import DEFAULT_DEVICE_MODEL, device_model
from drivers.sim.faults import FaultSettings
from drivers.sim.mvm_choice import KERNELS

MAX_PULSE_AMPLITUDE_UA = 800
"""32 current DACs ("write heads") of up to 800 µA [LG Methods p.7]."""
MIN_PULSE_WIDTH_NS = 10
MAX_PULSE_WIDTH_NS = 5000
DUPLICATE_MEMORY = 16
DUPLICATE_MEMORY_BYTES = 64 * 1024 * 1024
FIRMWARE_VERSION = "chipctl-sim 1.0"

ERR_RX_CRC, ERR_RX_FRAME, ERR_COMMAND, ERR_ADC_SATURATION = 1, 2, 4, 8
STATUS_READY, STATUS_WRITE_HEADS, STATUS_SIMULATED = 1, 2, 4


_MVM_READ_VOLTAGE_RANGE = (100, 400)
_COMMANDS = {int(command): command for command in Command}
"""Command codes to members: a dict look-up, where Command(code) takes half a microsecond."""
_DEFAULT_READ_VOLTAGE_MV = 200


class _Refused(Exception):
    """A request the board answers with an error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BoardOptions:
    """Options of a simulated board, from a URL query (``mockchip://?seed=1&cores=4``).

    Attributes:
        seed: seed of the chip's random generator (one chip instance per seed).
        cores: number of cores, 1..64.
        clock: "virtual" (advanced by operation latencies and CLOCK) or "real".
        devices: name of the device model (:data:`drivers.sim.devices.DEVICE_MODELS`):
            "hermes" (default) or "pcmlike".
        reset_after: the board resets when its N-th frame arrives (0 = never).
        kernel: the MVM kernel, "auto" (default: compiled when numba imports, or the
            environment variable ``CHIPCTL_MVM_KERNEL``), "numba" or "numpy"
            (:func:`drivers.sim.mvm_choice.make_kernel`).
        faults: link fault injection (corrupt, drop, delay_rate, delay_s, fault_seed).
    """

    seed: int = 0
    cores: int = 64
    clock: str = "virtual"
    devices: str = DEFAULT_DEVICE_MODEL
    reset_after: int = 0
    kernel: str = "auto"
    faults: FaultSettings = field(default_factory=FaultSettings)

    @classmethod
    def from_query(cls, query: str) -> BoardOptions:
        """Parse ``seed=1&cores=4&corrupt=1e-4…``; unknown or malformed options are errors."""
        fields: dict[str, str] = {}
        for key, values in parse_qs(query, keep_blank_values=True, strict_parsing=False).items():
            if len(values) != 1:
                raise ValueError(f"option {key!r} given {len(values)} times")
            fields[key] = values[0]
        ints = {
            "seed": (0, 2**63 - 1),
            "cores": (1, 64),
            "reset_after": (0, 2**31),
            "fault_seed": (0, 2**63 - 1),
        }
        floats = {"corrupt", "drop", "delay_rate", "delay_s"}
        known = set(ints) | floats | {"clock", "devices", "kernel"}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown simulator option(s) {unknown}; known: {sorted(known)}")
        parsed: dict[str, int | float | str] = {}
        for key, text in fields.items():
            if key in ints:
                try:
                    value = int(text)
                except ValueError:
                    raise ValueError(f"option {key}={text!r} is not an integer") from None
                low, high = ints[key]
                if not low <= value <= high:
                    raise ValueError(f"option {key}={value} outside [{low}, {high}]")
                parsed[key] = value
            elif key in floats:
                try:
                    parsed[key] = float(text)
                except ValueError:
                    raise ValueError(f"option {key}={text!r} is not a number") from None
            elif key == "devices":
                device_model(text)  # refuses an unknown name, listing the known ones
                parsed[key] = text
            elif key == "kernel":
                if text not in KERNELS:
                    raise ValueError(f"option kernel={text!r} must be one of {', '.join(KERNELS)}")
                parsed[key] = text
            else:
                if text not in ("virtual", "real"):
                    raise ValueError(f"option clock={text!r} must be 'virtual' or 'real'")
                parsed[key] = text
        faults = FaultSettings(
            corrupt=float(parsed.pop("corrupt", 0.0)),
            drop=float(parsed.pop("drop", 0.0)),
            delay_rate=float(parsed.pop("delay_rate", 0.0)),
            delay_s=float(parsed.pop("delay_s", 0.0)),
            fault_seed=int(parsed.pop("fault_seed", 0)),
        )
        return cls(faults=faults, **parsed)  # type: ignore[arg-type]

    def make_chip(self) -> SimulatedChip:
        """A simulated chip for these options (seeded generator, virtual or real clock)."""
        clock = VirtualClock() if self.clock == "virtual" else RealTimeClock()
        return SimulatedChip(
            rng=np.random.default_rng(self.seed),
            n_cores=self.cores,
            clock=clock,
            chip_id=f"SIM-HERMES-{self.seed:04d}",
            devices=device_model(self.devices),
            kernel=None if self.kernel == "auto" else self.kernel,
        )


class SimulatedBoard:
    """Board firmware model around a :class:`SimulatedChip`.

    Args:
        chip: the simulated chip.
        board_id: identifier reported by IDENTIFY.
        reset_after: reset (new boot id, registers and LDPU lost, frame dropped) when the
            N-th frame arrives; 0 never.
        boot_seed: seed for boot identifiers.
    """

    def __init__(
        self,
        chip: SimulatedChip,
        *,
        board_id: str = "SIMBOARD-0",
        reset_after: int = 0,
        boot_seed: int = 0,
    ) -> None:
        self.chip = chip
        self.board_id = board_id
        self.reset_after = reset_after
        self._boot_rng = np.random.default_rng([boot_seed, 0xB007])
        self.boot_id = self._new_boot_id(0)
        self.decoder = FrameDecoder()
        self.frames_seen = 0
        self.frames_received = 0
        self.frames_rejected = 0
        self.last_seq = 0
        self.error_register = 0
        self.write_heads_enabled = False
        self.resets = 0
        self._scratch = 0
        self._saturation_seen = 0
        self.geometry = ChipGeometry(
            n_cores=chip.n_cores, rows=ROWS, cols=COLS, devices_per_weight=DEVICES
        )
        """The chip's shape as IDENTIFY reports it (the simulated chip's defaults)."""
        self._replies: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._replies_bytes = 0  # their total length, kept as they come and go
        # Each handler takes the decoded request payload (REQUESTS[command]) and returns the
        # reply payload (REPLIES[command]); _answer does the decoding and encoding.
        self._handlers: dict[int, Callable[[Any], Payload]] = {
            Command.IDENTIFY: self._identify,
            Command.RESET: self._reset,
            Command.STATUS: self._status,
            Command.READ_REGISTER: self._read_register,
            Command.WRITE_REGISTER: self._write_register,
            Command.SAFE_STATE: self._safe_state,
            Command.CLEAR_ERRORS: self._clear_errors,
            Command.PULSES: self._pulses,
            Command.VERIFY_READ: self._verify_read,
            Command.MVM: self._mvm,
            Command.LDPU_LOAD: self._ldpu_load,
            Command.LDPU_READ: self._ldpu_read,
            Command.TEMPERATURE: self._temperature,
            Command.CLOCK: self._clock,
        }

    @classmethod
    def from_options(cls, options: BoardOptions) -> SimulatedBoard:
        """A simulated board around a new chip made from ``options``."""
        return cls(options.make_chip(), reset_after=options.reset_after, boot_seed=options.seed)

    # -- framing ----------------------------------------------------------------------------

    def receive(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Feed bytes from the host; return the reply frames they complete."""
        replies: list[bytes] = []
        for item in self.decoder.feed(data):
            self.frames_seen += 1
            if self.reset_after and self.frames_seen == self.reset_after:
                self.power_cycle()
                continue
            if isinstance(item, Frame):
                replies.append(self._answer(item))
            elif isinstance(item, CorruptFrame):
                self.frames_rejected += 1
                self.error_register |= ERR_RX_CRC
                replies.append(
                    encode_error(
                        item.command,
                        item.seq,
                        ErrorCode.CRC_ERROR,
                        "request payload failed its CRC; not executed",
                        boot_id=self.boot_id,
                    )
                )
            elif isinstance(item, BadHeader):
                self.frames_rejected += 1
                self.error_register |= ERR_RX_FRAME
                code = (
                    ErrorCode.UNSUPPORTED_VERSION
                    if item.version != VERSION
                    else ErrorCode.FRAME_ERROR
                )
                replies.append(
                    encode_error(item.command, item.seq, code, item.reason, boot_id=self.boot_id)
                )
        return replies

    def disconnect(self) -> None:
        """The host went away: drop any half-received frame and the duplicate memory (a new
        host's sequence numbers must never be answered with the old host's replies)."""
        self.decoder.reset()
        self._forget_replies()

    def power_cycle(self) -> None:
        """Lose registers, LDPU coefficients and the duplicate memory; keep device states."""
        self.resets += 1
        self.boot_id = self._new_boot_id(self.boot_id)
        self._forget_replies()
        self.error_register = 0
        self.write_heads_enabled = False
        self._scratch = 0
        self.chip.reset_periphery()
        self._saturation_seen = self.chip.adc_saturation_count

    def _new_boot_id(self, previous: int) -> int:
        while True:
            candidate = int(self._boot_rng.integers(1, 0x10000))
            if candidate != previous:
                return candidate

    def _answer(self, frame: Frame) -> bytes:
        key = (frame.command, frame.seq, payload_crc(frame.payload))
        cached = self._replies.get(key)
        if cached is not None:
            return cached
        if frame.is_reply or frame.status != 0 or frame.boot_id != 0:
            self.frames_rejected += 1
            self.error_register |= ERR_RX_FRAME
            return encode_error(
                frame.command,
                frame.seq,
                ErrorCode.FRAME_ERROR,
                "a request must have flags, status and boot_id zero",
                boot_id=self.boot_id,
            )
        self.frames_received += 1
        handler = self._handlers.get(frame.command)
        try:
            if handler is None:
                raise _Refused(ErrorCode.UNKNOWN_COMMAND, f"unknown command 0x{frame.command:02x}")
            command = _COMMANDS[frame.command]  # a handler's: known
            try:
                request = REQUESTS[command].decode(memoryview(frame.payload))
            except PayloadError as exc:
                raise _Refused(ErrorCode.BAD_PAYLOAD, f"{command.name}: {exc}") from None
            answer = handler(request)
            assert isinstance(answer, REPLIES[command])
            reply = encode_chunks(
                frame.command, frame.seq, answer.chunks(), flags=Flags.REPLY, boot_id=self.boot_id
            )
        except _Refused as refused:
            self.error_register |= ERR_COMMAND
            reply = encode_error(
                frame.command, frame.seq, refused.code, str(refused), boot_id=self.boot_id
            )
        self.last_seq = frame.seq
        self._remember(key, reply)
        if self.chip.adc_saturation_count != self._saturation_seen:
            self.error_register |= ERR_ADC_SATURATION
            self._saturation_seen = self.chip.adc_saturation_count
        return reply

    def _forget_replies(self) -> None:
        self._replies.clear()
        self._replies_bytes = 0

    def _remember(self, key: tuple[int, int, int], reply: bytes) -> None:
        self._replies[key] = reply
        self._replies_bytes += len(reply)
        while len(self._replies) > DUPLICATE_MEMORY or (
            len(self._replies) > 1 and self._replies_bytes > DUPLICATE_MEMORY_BYTES
        ):
            self._replies_bytes -= len(self._replies.popitem(last=False)[1])

    # -- checks of request values (the layout was checked by the payload classes) ----------

    def _core(self, core: int) -> int:
        if not 0 <= core < self.geometry.n_cores:
            raise _Refused(
                ErrorCode.OUT_OF_RANGE, f"core {core} outside 0..{self.geometry.n_cores - 1}"
            )
        return core

    def _check_addresses(self, what: str, batch: PulseBatch | ReadBatch) -> None:
        self._core(batch.core)
        g = self.geometry
        for name, array, size in (
            ("row", batch.row, g.rows),
            ("col", batch.col, g.cols),
            ("device", batch.device, g.devices_per_weight),
        ):
            if array.max() >= size:
                raise _Refused(ErrorCode.OUT_OF_RANGE, f"{what}: {name} index above {size - 1}")

    # -- commands ---------------------------------------------------------------------------

    def _identify(self, request: Empty) -> BoardIdentity:
        g = self.geometry
        return BoardIdentity(
            protocol_version=VERSION,
            n_cores=g.n_cores,
            rows=g.rows,
            cols=g.cols,
            devices_per_weight=g.devices_per_weight,
            simulated=True,
            clock_control=isinstance(self.chip.clock, VirtualClock),
            max_pulse_amplitude_ua=MAX_PULSE_AMPLITUDE_UA,
            min_pulse_width_ns=MIN_PULSE_WIDTH_NS,
            max_pulse_width_ns=MAX_PULSE_WIDTH_NS,
            max_payload=MAX_PAYLOAD,
            board_id=self.board_id,
            firmware_version=FIRMWARE_VERSION,
            chip_id=self.chip.chip_id,
        )

    def _reset(self, request: Empty) -> BootId:
        self.power_cycle()
        return BootId(self.boot_id)

    def _status(self, request: Empty) -> BoardStatus:
        status = (
            STATUS_READY
            | STATUS_SIMULATED
            | (STATUS_WRITE_HEADS if self.write_heads_enabled else 0)
        )
        return BoardStatus(
            status_register=status,
            error_register=self.error_register,
            frames_received=self.frames_received & 0xFFFFFFFF,
            frames_rejected=self.frames_rejected & 0xFFFFFFFF,
            last_seq=self.last_seq,
            boot_id=self.boot_id,
            uptime_s=float(self.chip.clock.now_s),
        )

    def _register_value(self, address: int) -> int:
        values = {
            Register.SCRATCH: self._scratch,
            Register.MVM_READ_VOLTAGE_MV: int(round(self.chip.mvm_read_voltage_mv)),
            Register.ADC_SATURATION_COUNT: self.chip.adc_saturation_count & 0xFFFFFFFF,
            Register.BOOT_ID: self.boot_id,
            Register.FRAMES_RECEIVED: self.frames_received & 0xFFFFFFFF,
            Register.FRAMES_REJECTED: self.frames_rejected & 0xFFFFFFFF,
        }
        if address not in values:
            raise _Refused(ErrorCode.OUT_OF_RANGE, f"no register at address 0x{address:04x}")
        return int(values[Register(address)])

    def _read_register(self, request: RegisterAddress) -> RegisterValue:
        return RegisterValue(request.address, self._register_value(request.address))

    def _write_register(self, request: RegisterValue) -> RegisterValue:
        address, value = request.address, request.value
        self._register_value(address)  # unknown address -> OUT_OF_RANGE
        if address == Register.SCRATCH:
            self._scratch = value
        elif address == Register.MVM_READ_VOLTAGE_MV:
            low, high = _MVM_READ_VOLTAGE_RANGE
            if not low <= value <= high:
                raise _Refused(
                    ErrorCode.OUT_OF_RANGE, f"MVM read voltage {value} mV outside {low}..{high}"
                )
            self.chip.mvm_read_voltage_mv = float(value)
        else:
            raise _Refused(ErrorCode.NOT_SUPPORTED, f"register 0x{address:04x} is read-only")
        return RegisterValue(address, self._register_value(address))

    def _safe_state(self, request: Empty) -> Empty:
        self.write_heads_enabled = False
        return Empty()

    def _clear_errors(self, request: Empty) -> ErrorRegister:
        previous, self.error_register = self.error_register, 0
        return ErrorRegister(previous)

    def _pulses(self, request: PulseBatch) -> PulsesApplied:
        self._check_addresses("PULSES", request)
        amps, widths = request.amplitude_ua, request.width_ns
        if request.kind.max() > 2:
            raise _Refused(ErrorCode.OUT_OF_RANGE, "PULSES: pulse kind above 2")
        if amps.min() < 1 or amps.max() > MAX_PULSE_AMPLITUDE_UA:
            raise _Refused(
                ErrorCode.OUT_OF_RANGE, f"PULSES: amplitude outside 1..{MAX_PULSE_AMPLITUDE_UA} µA"
            )
        if widths.min() < MIN_PULSE_WIDTH_NS or widths.max() > MAX_PULSE_WIDTH_NS:
            raise _Refused(
                ErrorCode.OUT_OF_RANGE,
                f"PULSES: width outside {MIN_PULSE_WIDTH_NS}..{MAX_PULSE_WIDTH_NS} ns",
            )
        self.write_heads_enabled = True
        self.chip.apply_pulses(
            request.core,
            request.row,
            request.col,
            request.device,
            request.kind,
            amps.astype(np.uint16, copy=False),
            widths.astype(np.uint16, copy=False),
        )
        return PulsesApplied(request.n)

    def _verify_read(self, request: ReadBatch) -> ReadCounts:
        self._check_addresses("VERIFY_READ", request)
        counts = self.chip.verify_read(request.core, request.row, request.col, request.device)
        return ReadCounts(np.asarray(counts, dtype="<u2"))

    def _mvm(self, request: MvmRequest) -> MvmReply:
        mode, output, batch = request.mode, request.output, request.batch
        if mode not in (1, 4):
            raise _Refused(ErrorCode.OUT_OF_RANGE, f"MVM: mode {mode} is neither 1 nor 4")
        if output not in (OUTPUT_RAW, OUTPUT_LDPU):
            raise _Refused(ErrorCode.OUT_OF_RANGE, f"MVM: output {output} is neither 0 nor 1")
        if request.cols != self.geometry.cols:
            raise _Refused(
                ErrorCode.BAD_PAYLOAD,
                f"MVM: input vectors of {request.cols} values; this chip has "
                f"{self.geometry.cols} columns",
            )
        cores = request.cores.tolist()
        for core in cores:
            self._core(core)
        if len(set(cores)) != len(cores):
            raise _Refused(ErrorCode.OUT_OF_RANGE, "MVM: a core appears twice")
        rows = request.rows
        if rows is not None and rows[1] > self.geometry.rows:
            raise _Refused(
                ErrorCode.OUT_OF_RANGE,
                f"MVM: rows [{rows[0]}, {rows[1]}) beyond the chip's {self.geometry.rows} rows",
            )
        n_rows = self.geometry.rows if rows is None else rows[1] - rows[0]
        if MvmReply.payload_size(output, len(cores), batch, n_rows) > MAX_PAYLOAD:
            raise _Refused(
                ErrorCode.OUT_OF_RANGE, "MVM: the reply would exceed the maximum payload"
            )
        inputs = request.inputs
        if holds_int8_min(inputs):
            raise _Refused(
                ErrorCode.OUT_OF_RANGE, "MVM: input -128 is not representable (sign + 7 bit)"
            )
        core_ids = request.cores.astype(np.intp)
        if output == OUTPUT_LDPU:
            outputs = self.chip.mvm_ldpu(core_ids, inputs, mode, rows)
            return MvmReply.ldpu(np.ascontiguousarray(outputs, dtype=np.int8))
        positive, negative = self.chip.mvm_raw(core_ids, inputs, mode, rows)
        return MvmReply.raw(
            np.ascontiguousarray(positive, dtype="<u2"), np.ascontiguousarray(negative, dtype="<u2")
        )

    def _ldpu_load(self, request: LdpuTable) -> Empty:
        self._core(request.core)
        if request.rows != self.geometry.rows:
            raise _Refused(
                ErrorCode.BAD_PAYLOAD,
                f"LDPU_LOAD: coefficients for {request.rows} rows; this chip has "
                f"{self.geometry.rows}",
            )
        try:
            coefficients = request.coefficients()
        except LimitError as exc:
            raise _Refused(ErrorCode.OUT_OF_RANGE, f"LDPU_LOAD: {exc}") from None
        self.chip.set_ldpu(request.core, coefficients)
        return Empty()

    def _ldpu_read(self, request: CoreId) -> LdpuTable:
        core = self._core(request.core)
        return LdpuTable.of(core, self.chip.get_ldpu(core))

    def _temperature(self, request: Empty) -> DieTemperature:
        return DieTemperature(int(round(self.chip.die_temperature_c() * 1000.0)))

    def _clock(self, request: ClockAdvance) -> ClockTime:
        advance_s = request.advance_s
        if not isinstance(self.chip.clock, VirtualClock):
            raise _Refused(
                ErrorCode.NOT_SUPPORTED, "this board runs in real time; CLOCK is not available"
            )
        if not (np.isfinite(advance_s) and 0.0 <= advance_s <= MAX_CLOCK_ADVANCE_S):
            raise _Refused(
                ErrorCode.OUT_OF_RANGE,
                f"CLOCK: advance {advance_s!r} s outside 0..{MAX_CLOCK_ADVANCE_S:g}",
            )
        if advance_s > 0:
            self.chip.clock.advance(advance_s)
        return ClockTime(float(self.chip.clock.now_s))


__all__ = ["BoardOptions", "RealTimeClock", "SimulatedBoard"]
