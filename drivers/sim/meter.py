"""A profile-driven Modbus meter on a real pymodbus server (TCP, RTU over TCP, or RTU on a pty).

Each unit id is one simulated meter: a :class:`~drivers.profile.Profile` plus either a
live :class:`~drivers.sim.model.MeterModel` (counters rise while you read) or a fixed
register image (a capture). Registers between the lowest and highest address the
profile uses are defined (reading them gives 0 unless a value lives there), except
for profiles with ``max_gap = 0``, where only the profile's own registers exist, as on
devices that refuse reads over undefined registers. A read outside answers
exception 2 (illegal data address), like a real meter.

Fault injection that a conforming server can still express lives here:
``fail_with`` makes a unit answer every read with a Modbus exception code.
Silence, corrupted CRC, garbage and wrong-unit answers need a raw responder
(:mod:`drivers.sim.faults`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers import decode
from drivers.profile import Profile, RegisterDef
from drivers.sim.model import MeterModel

RegisterImage = dict[tuple[int, int], int]
"""``{(function, address): word}``: a register dump."""


@dataclass
class SimUnit:
    """One simulated device on the server."""

    unit: int
    profile: Profile
    model: MeterModel | None = None
    image: RegisterImage | None = None
    """Fixed registers (a capture); overrides ``model`` where present."""
    image_fn: Callable[[], RegisterImage] | None = None
    """Registers computed on every read (e.g. a SunSpec map with rising counters)."""
    fail_with: int | None = None
    """Answer every read with this Modbus exception code."""
    reads: int = field(default=0)


def encode_value(r: RegisterDef, value: object) -> list[int]:
    """Registers holding a physical value (in the quantity's unit) for a profile register."""
    from decimal import Decimal

    raw = Decimal(str(value)) / r.scale
    if decode.TYPES[r.type].is_float:
        return decode.encode_raw(r.type, float(raw), r.word_order, r.byte_order)
    return decode.encode_raw(r.type, int(raw.to_integral_value()), r.word_order, r.byte_order)


def live_image(unit: SimUnit) -> RegisterImage:
    """The unit's registers right now."""
    image: RegisterImage = {}
    if unit.model is not None:
        for r in unit.profile.registers:
            words = encode_value(r, unit.model.value(r.quantity))
            for i, w in enumerate(words):
                image[(r.function, r.address + i)] = w
        for p in (unit.profile.probe, unit.profile.identify):
            if p is not None and p.equals:
                words = decode.encode_raw(p.type, p.equals[0], p.word_order, p.byte_order)
                for i, w in enumerate(words):
                    image[(p.function, p.address + i)] = w
    if unit.image_fn is not None:
        image.update(unit.image_fn())
    if unit.image:
        image.update(unit.image)
    return image


def _ranges(unit: SimUnit, function: int) -> list[tuple[int, int]]:
    """Defined register ranges ``[start, end)`` of one function for a unit."""
    spans = [(r.address, r.address + r.count) for r in unit.profile.registers
             if r.function == function]
    for p in (unit.profile.probe, unit.profile.identify):
        if p is not None and p.function == function:
            spans.append((p.address, p.address + decode.TYPES[p.type].registers))
    if unit.image or unit.image_fn:
        spans += [(a, a + 1) for (f, a) in live_image(unit) if f == function]
    if not spans:
        return []
    if unit.profile.max_gap > 0:
        return [(min(s for s, _ in spans), max(e for _, e in spans))]
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def _block(ranges: list[tuple[int, int]]) -> list[SimData]:
    if not ranges:
        return [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)]
    out = []
    for s, e in ranges:
        out.append(SimData(s, count=e - s, values=0, datatype=DataType.REGISTERS))
    return out


async def _action(unit: SimUnit, function_code: int, start_address: int, address: int,
                  count: int, registers: list[int], set_values: object) -> ExcCodes | None:
    unit.reads += 1
    if unit.fail_with is not None:
        return ExcCodes(unit.fail_with)
    image = live_image(unit)
    for a in range(address, address + count):
        registers[a - start_address] = image.get((function_code, a), 0)
    return None


def sim_device(unit: SimUnit) -> SimDevice:
    """A pymodbus :class:`SimDevice` serving ``unit``."""
    bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
    return SimDevice(
        unit.unit,
        simdata=(bits, list(bits), _block(_ranges(unit, 3)), _block(_ranges(unit, 4))),
        action=functools.partial(_action, unit),
    )


class MeterServer:
    """A running pymodbus server holding simulated units; use as an async context manager."""

    def __init__(self, units: Iterable[SimUnit], *, transport: str = "tcp",
                 port: str | None = None, host: str = "127.0.0.1", tcp_port: int = 0) -> None:
        self.units = {u.unit: u for u in units}
        self.transport = transport
        self.serial_port = port
        self.host = host
        self.tcp_port = tcp_port
        """The TCP port to listen on (0: a free one); after :meth:`start`, the port."""
        self._server: ModbusTcpServer | ModbusSerialServer | None = None

    async def start(self) -> None:
        devices = [sim_device(u) for u in self.units.values()]
        if self.transport == "rtu":
            self._server = ModbusSerialServer(devices, framer=FramerType.RTU,
                                              port=self.serial_port or "", baudrate=9600)
        else:
            framer = FramerType.RTU if self.transport == "rtu-tcp" else FramerType.SOCKET
            self._server = ModbusTcpServer(devices, framer=framer,
                                           address=(self.host, self.tcp_port))
        await self._server.serve_forever(background=True)
        if self.transport != "rtu":
            self.tcp_port = self._server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        await asyncio.sleep(0)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    async def __aenter__(self) -> MeterServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
