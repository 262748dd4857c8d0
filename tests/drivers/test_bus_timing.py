"""Timing on one RS-485 bus, checked at a serial-level responder on a pseudo-terminal:
the RTU inter-frame gap the bus inserts between frames, and a silent meter costing only
its own timeout. Ptys do not emulate baud: these are the gaps the code inserts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from drivers import profile
from drivers.base import MeterSpec, open_meter
from drivers.modbus import ModbusMeter
from drivers.modbus_bus import rtu_gap_s
from drivers.sim.faults import FaultResponder
from drivers.sim.meter import SimUnit, live_image
from drivers.sim.model import MeterModel
from drivers.sim.rtupty import RtuPtyResponder
from ledger.errors import DeviceTimeout

NAME = "eastron-sdm630"


@pytest.fixture
def bus() -> Iterator[RtuPtyResponder]:
    """Units 1 and 2 answer on one pty line; every other unit id is silent."""
    image = live_image(SimUnit(1, profile.load(NAME), MeterModel()))
    with RtuPtyResponder({1: FaultResponder(image, unit=1),
                          2: FaultResponder(image, unit=2)}) as responder:
        yield responder


def meter(port: str, unit: int, timeout: float = 1.0, **options: object) -> ModbusMeter:
    m = open_meter(MeterSpec(f"m{unit}", "modbus-rtu", port=port, unit=unit, profile=NAME,
                             baudrate=9600, timeout_s=timeout, options=options))
    assert isinstance(m, ModbusMeter)
    return m


@pytest.mark.parametrize("gap_ms", [None, 30])
def test_inter_frame_gap_is_kept_between_requests_of_two_meters(bus: RtuPtyResponder,
                                                                 gap_ms: int | None) -> None:
    options = {} if gap_ms is None else {"inter_frame_gap_ms": gap_ms}

    async def go() -> None:
        a, b = meter(bus.port, 1, **options), meter(bus.port, 2, **options)
        try:
            assert a.bus is b.bus
            await asyncio.gather(a.read(1), b.read(1), a.read(2), b.read(2))
        finally:
            await a.close()
            await b.close()
    asyncio.run(go())
    expected = rtu_gap_s(9600) if gap_ms is None else gap_ms / 1000
    gaps = bus.gaps()
    units = [frame[0] for _, kind, frame in bus.log if kind == "rx"]
    assert {1, 2} <= set(units) and len(gaps) >= 7  # 4 polls x 2 requests, interleaved
    assert min(gaps) >= expected, (min(gaps), expected)


def test_silent_meter_on_the_same_bus_costs_only_its_own_timeout(bus: RtuPtyResponder) -> None:
    """Counted, not timed against the machine: the silent meter gets one request (one
    timeout, no retries) and the healthy meter's requests all come after it and are
    answered; only a lower bound of time is checked (the dead meter waited its timeout)."""
    async def go() -> tuple[float, int]:
        healthy, dead = meter(bus.port, 1), meter(bus.port, 9, timeout=0.5)
        try:
            assert healthy.bus is dead.bus
            await healthy.read(1)  # warm up: port open
            bus.log.clear()

            async def timed_dead() -> float:
                t = time.monotonic()
                with pytest.raises(DeviceTimeout):
                    await dead.read(3)
                return time.monotonic() - t

            dead_took, readings = await asyncio.gather(timed_dead(), healthy.read(3))
            return dead_took, len(readings)
        finally:
            await healthy.close()
            await dead.close()
    dead_took, n_readings = asyncio.run(go())
    assert dead_took >= 0.5  # it waited its own timeout
    requests = [frame[0] for _, kind, frame in bus.log if kind == "rx"]
    answers = [frame[0] for _, kind, frame in bus.log if kind == "tx"]
    assert requests.count(9) == 1  # the poll stops at the first unanswered request
    # the healthy meter waited for the bus once, then every request of its poll was answered
    assert requests[0] == 9 and set(requests[1:]) == {1}
    assert answers == requests[1:] and n_readings > 0
