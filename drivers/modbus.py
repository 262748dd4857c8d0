"""Modbus meters driven by profiles: RTU on a serial port, TCP, and RTU over TCP.

Registers drivers ``modbus-rtu``, ``modbus-tcp`` and ``modbus-rtu-over-tcp``. A meter
is a profile (which registers mean what) plus a place on a shared bus
(:mod:`drivers.modbus_bus`). Each poll reads the profile's registers with the fewest
requests (:mod:`drivers.coalesce`) and decodes them with the fixed decoders and
rounding rule of :mod:`drivers.decode`.

``MeterSpec`` fields used: ``port`` (rtu) or ``host`` + ``tcp_port`` (tcp, rtu-over-tcp;
default 502), ``unit`` (1..247, default 1), ``profile`` (name or path, required),
``baudrate``/``parity``/``stopbits``/``bytesize`` (rtu; default 9600 8N1),
``timeout_s``; ``options["inter_frame_gap_ms"]`` overrides the RTU gap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from drivers import decode
from drivers.base import Meter, MeterSpec, check_options, register
from drivers.coalesce import Request, Span, plan
from drivers.modbus_bus import Bus, BusKey, SerialSettings, acquire
from drivers.profile import Profile, RegisterDef
from drivers.profile import load as load_profile
from drivers.serialport import check_line
from ledger import Reading
from ledger.errors import ConfigError, DeviceError, DeviceExceptionResponse

log = logging.getLogger(__name__)

OPTIONS = ("inter_frame_gap_ms",)
"""Option keys a Modbus meter accepts (anything else is refused as a likely typo)."""


@dataclass
class MeterStats:
    """Per-meter counters the agent may log or expose."""

    polls: int = 0
    requests: int = 0
    failures: int = 0
    skipped_values: int = 0
    """Values the meter reported as NaN/infinite or out of range (left out of a poll)."""


def bus_for(spec: MeterSpec, transport: str) -> Bus:
    """Acquire the shared bus a spec describes.

    Raises:
        ConfigError: a field the transport needs is missing or invalid (named).
    """
    gap_ms = spec.options.get("inter_frame_gap_ms")
    if gap_ms is not None and (isinstance(gap_ms, bool) or not isinstance(gap_ms, int | float)
                               or not 0 <= gap_ms <= 10_000):
        raise ConfigError("options.inter_frame_gap_ms",
                          f"must be a number of milliseconds in 0..10000, not {gap_ms!r}")
    gap = None if gap_ms is None else float(gap_ms) / 1000.0
    if transport == "serial":
        if not spec.port:
            raise ConfigError("port", "a serial Modbus meter needs port (e.g. /dev/ttyUSB0)")
        baud, parity, stop, size = check_line(spec.baudrate, spec.parity, spec.stopbits,
                                              spec.bytesize)
        return acquire(BusKey("serial", spec.port), SerialSettings(baud, parity, stop, size),
                       gap)
    if not spec.host:
        raise ConfigError("host", "a Modbus TCP meter needs host")
    port = 502 if spec.tcp_port is None else spec.tcp_port
    if type(port) is not int or not 1 <= port <= 65535:
        raise ConfigError("tcp_port", f"{port} is not a TCP port")
    return acquire(BusKey(transport, f"{spec.host}:{port}"), None, gap or 0.0)


def check_unit(spec: MeterSpec) -> int:
    """The spec's Modbus unit id. Raises ConfigError if outside 0..247."""
    unit = 1 if spec.unit is None else spec.unit
    if not 0 <= unit <= 247:
        raise ConfigError("unit", f"{unit} is not a Modbus unit id (1..247; 0 for TCP devices "
                          "that ignore it)")
    return unit


def check_timeout(spec: MeterSpec) -> float:
    """The spec's timeout. Raises ConfigError unless 0 < timeout <= 60 s."""
    if not 0 < spec.timeout_s <= 60:
        raise ConfigError("timeout_s", f"{spec.timeout_s} is not in (0, 60] seconds")
    return spec.timeout_s


@dataclass(frozen=True)
class RegisterResult:
    """One register of a technician's read: its reading, or the error that kept it (both
    None: the value was left out, e.g. a NaN the meter reports for "not available")."""

    register: RegisterDef
    reading: Reading | None
    error: DeviceError | None

    @property
    def quantity(self) -> str:
        return self.register.quantity


class ModbusMeter(Meter):
    """A register-map meter described by a :class:`Profile`."""

    def __init__(self, spec: MeterSpec, profile: Profile, bus: Bus) -> None:
        self.spec = spec
        self.profile = profile
        self.bus = bus
        self.unit = check_unit(spec)
        self.timeout = check_timeout(spec)
        self.stats = MeterStats()
        self.plan: list[Request] = plan(
            (Span(r.function, r.address, r.count) for r in profile.registers),
            max_registers=profile.max_registers, max_gap=profile.max_gap)
        self._closed = False

    async def read_block(self, function: int, address: int, count: int) -> list[int]:
        """One raw read on the meter's bus (used by polls, probes and scans).

        Raises:
            DeviceError: see :meth:`drivers.modbus_bus.Bus.read_registers`.
        """
        self.stats.requests += 1
        return await self.bus.read_registers(function, address, count, self.unit,
                                             self.timeout)

    async def probe(self) -> bool:
        """Read the profile's probe register; True if its value fits the profile.

        Raises:
            DeviceError: no answer, or an exception response.
        """
        p = self.profile.probe
        if p is None:
            raise ConfigError("probe", f"profile {self.profile.name} has no probe register")
        words = await self.read_block(p.function, p.address, decode.TYPES[p.type].registers)
        return p.matches(decode.decode_raw(p.type, words, p.word_order, p.byte_order))

    async def read(self, now_ms: int) -> list[Reading]:
        """Read every register of the profile once, fewest requests.

        Raises:
            DeviceError: any request failed (nothing partial is returned).
        """
        self.stats.polls += 1
        memory: dict[tuple[int, int], int] = {}
        try:
            for req in self.plan:
                words = await self.read_block(req.function, req.address, req.count)
                for i, w in enumerate(words):
                    memory[(req.function, req.address + i)] = w
        except DeviceError:
            self.stats.failures += 1
            raise
        return self.decode(memory, now_ms)

    async def read_each(self, now_ms: int) -> list[RegisterResult]:
        """For a technician's one-off read: every register of the profile with its reading
        or the error that kept it, instead of failing the whole read on one register.

        A request refused with an exception response is retried register by register, so
        each refused register carries its own error; a request that times out or brings
        no valid frame marks its registers with that error.

        Raises:
            DeviceError: the very first request got no answer (nothing to show).
        """
        memory: dict[tuple[int, int], int] = {}
        errors: dict[tuple[int, int], DeviceError] = {}
        answered = False
        for req in self.plan:
            try:
                words = await self.read_block(req.function, req.address, req.count)
            except DeviceExceptionResponse as exc:
                answered = True
                del exc  # each register inside gets its own answer
                await self._read_singly(req.function, req.address, req.count, memory, errors)
                continue
            except DeviceError as exc:
                if not answered:
                    raise
                for a in range(req.address, req.address + req.count):
                    errors[(req.function, a)] = exc
                continue
            answered = True
            for i, w in enumerate(words):
                memory[(req.function, req.address + i)] = w
        out: list[RegisterResult] = []
        for r in self.profile.registers:
            keys = [(r.function, r.address + i) for i in range(r.count)]
            failed = next((errors[k] for k in keys if k in errors), None)
            if failed is not None or any(k not in memory for k in keys):
                out.append(RegisterResult(r, None, failed))
                continue
            out.append(RegisterResult(r, self._reading(r, [memory[k] for k in keys], now_ms),
                                      None))
        return out

    async def _read_singly(self, function: int, address: int, count: int,
                           memory: dict[tuple[int, int], int],
                           errors: dict[tuple[int, int], DeviceError]) -> None:
        """Read each profile register inside a refused block on its own."""
        for r in self.profile.registers:
            if r.function != function or not address <= r.address < address + count:
                continue
            try:
                words = await self.read_block(r.function, r.address, r.count)
            except DeviceError as exc:
                for i in range(r.count):
                    errors[(r.function, r.address + i)] = exc
                continue
            for i, w in enumerate(words):
                memory[(r.function, r.address + i)] = w

    def decode(self, memory: dict[tuple[int, int], int], now_ms: int) -> list[Reading]:
        """Readings from a register image ``{(function, address): word}``.

        Raises:
            DeviceError: a register of the profile is missing from ``memory``.
        """
        out: list[Reading] = []
        for r in self.profile.registers:
            try:
                words = [memory[(r.function, r.address + i)] for i in range(r.count)]
            except KeyError:
                raise DeviceError("register missing from the read", bus=self.bus.name,
                                  unit=self.unit, register=r.address) from None
            reading = self._reading(r, words, now_ms)
            if reading is not None:
                out.append(reading)
        return out

    def _reading(self, r: RegisterDef, words: list[int], now_ms: int) -> Reading | None:
        raw = decode.decode_raw(r.type, words, r.word_order, r.byte_order)
        try:
            value, quality = decode.to_integer(raw, r.scale, r.exponent)
        except ValueError as exc:
            self.stats.skipped_values += 1
            log.warning("%s: %s register %d (%s): %s; value left out", self.spec.meter_id,
                        self.bus.name, r.address, r.quantity, exc)
            return None
        return Reading.make(self.spec.meter_id, r.quantity, value, r.exponent, r.unit, now_ms,
                            quality=quality)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.bus.release()


def _factory(transport: str):  # noqa: ANN202 - returns a DriverFactory
    def make(spec: MeterSpec) -> Meter:
        check_options(spec, OPTIONS)
        if not spec.profile:
            raise ConfigError("profile", "a Modbus meter needs a profile (see `meterchain "
                              "profile list`)")
        profile = load_profile(spec.profile)
        if profile.protocol != "modbus":
            raise ConfigError("profile", f"{profile.name} is a {profile.protocol} profile; "
                              f"use protocol sunspec-tcp or sunspec-rtu")
        check_unit(spec)
        check_timeout(spec)
        return ModbusMeter(spec, profile, bus_for(spec, transport))
    return make


register("modbus-rtu", _factory("serial"), "Modbus RTU on a serial (RS-485) port, profile-driven")
register("modbus-tcp", _factory("tcp"), "Modbus TCP, profile-driven")
register("modbus-rtu-over-tcp", _factory("rtu-tcp"),
         "Modbus RTU frames through a TCP serial gateway, profile-driven")
