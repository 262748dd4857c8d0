"""Modbus drivers against real pymodbus servers on TCP sockets and pseudo-terminals."""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal

import pytest

from drivers import profile
from drivers.base import MeterSpec, open_meter
from drivers.modbus import ModbusMeter
from drivers.sim.faults import FaultResponder
from drivers.sim.meter import MeterServer, SimUnit, live_image
from drivers.sim.model import MeterModel
from ledger.errors import (
    ConfigError,
    DeviceError,
    DeviceExceptionResponse,
    DeviceTimeout,
    FrameError,
)

MODBUS_PROFILES = sorted(n for n in profile.available() if profile.load(n).protocol == "modbus")


def tcp_meter(port: int, name: str, unit: int = 1, proto: str = "modbus-tcp",
              timeout: float = 1.0, meter_id: str = "m1") -> ModbusMeter:
    m = open_meter(MeterSpec(meter_id, proto, host="127.0.0.1", tcp_port=port, unit=unit,
                             profile=name, timeout_s=timeout))
    assert isinstance(m, ModbusMeter)
    return m


@pytest.mark.parametrize("name", MODBUS_PROFILES)
def test_every_profile_reads_a_simulated_meter_over_tcp(name: str) -> None:
    async def go() -> None:
        p = profile.load(name)
        model = MeterModel(export_w=Decimal(0), speed=3600.0)
        async with MeterServer([SimUnit(7, p, model)]) as srv:
            m = tcp_meter(srv.tcp_port, name, unit=7)
            try:
                assert await m.probe()
                before = m.bus.stats.requests
                first = {r.obis: r for r in await m.read(1_000)}
                assert m.bus.stats.requests - before == len(m.plan)
                assert len(m.plan) < len(p.registers)
                assert set(first) == {r.quantity for r in p.registers}
                await asyncio.sleep(0.05)
                second = {r.obis: r for r in await m.read(2_000)}
            finally:
                await m.close()
        v = first["1-0:32.7.0"]
        assert v.value * Decimal(10) ** v.exponent == Decimal("230.1") and v.unit == "V"
        assert v.timestamp_ms == 1_000 and second["1-0:32.7.0"].timestamp_ms == 2_000
        assert second["1-0:1.8.0"].value > first["1-0:1.8.0"].value  # counters rise
    asyncio.run(go())


def test_prosumer_export_counter_rises_and_power_is_negative() -> None:
    async def go() -> None:
        p = profile.load("eastron-sdm630")
        model = MeterModel(import_w=Decimal(300), export_w=Decimal(2500), speed=36000.0)
        async with MeterServer([SimUnit(1, p, model)]) as srv:
            m = tcp_meter(srv.tcp_port, "eastron-sdm630")
            a = {r.obis: r.value for r in await m.read(1)}
            await asyncio.sleep(0.05)
            b = {r.obis: r.value for r in await m.read(2)}
            await m.close()
        assert b["1-0:2.8.0"] > a["1-0:2.8.0"] and b["1-0:1.8.0"] > a["1-0:1.8.0"]
        assert a["1-0:16.7.0"] == -2200
    asyncio.run(go())


def test_exception_response_says_profile_does_not_match() -> None:
    async def go() -> None:
        p = profile.load("abb-b2x")
        async with MeterServer([SimUnit(1, p, MeterModel(), fail_with=2)]) as srv:
            m = tcp_meter(srv.tcp_port, "abb-b2x")
            with pytest.raises(DeviceExceptionResponse) as err:
                await m.read(1)
            await m.close()
        assert err.value.code == 2 and err.value.unit == 1 and err.value.register == 0x5000
        assert "profile does not match" in str(err.value)
        assert m.stats.failures == 1
    asyncio.run(go())


def test_wrong_profile_on_a_device_reads_illegal_address() -> None:
    async def go() -> None:
        async with MeterServer([SimUnit(1, profile.load("eastron-sdm120"), MeterModel())]) as srv:
            m = tcp_meter(srv.tcp_port, "abb-b2x")
            with pytest.raises(DeviceExceptionResponse, match="illegal data address"):
                await m.read(1)
            with pytest.raises(DeviceExceptionResponse):
                await m.probe()
            sdm = tcp_meter(srv.tcp_port, "eastron-sdm120")
            assert await sdm.probe()
            await sdm.close()
            await m.close()
    asyncio.run(go())


def image_for(name: str) -> dict[tuple[int, int], int]:
    return live_image(SimUnit(1, profile.load(name), MeterModel()))


@pytest.mark.parametrize("mode,error,text", [
    ("silent", DeviceTimeout, "no answer within 0.3 s"),
    ("bad-crc", FrameError, "no valid frame"),
    ("garbage", FrameError, "no valid frame"),
    ("wrong-unit", FrameError, "different unit"),
])
def test_fault_modes_give_device_errors_with_context(mode: str, error: type[DeviceError],
                                                     text: str) -> None:
    async def go() -> None:
        async with FaultResponder(image_for("eastron-sdm120"), unit=5, mode=mode) as fr:
            m = tcp_meter(fr.port, "eastron-sdm120", unit=5, proto="modbus-rtu-over-tcp",
                          timeout=0.3)
            with pytest.raises(error) as err:
                await m.read(1)
            requests_in_failed_poll = fr.requests
            planned = len(m.plan)
            # the responder recovers: a correct answer after the fault still reads
            fr.mode = "ok"
            readings = await m.read(2)
            await m.close()
        assert text in str(err.value)
        assert err.value.bus == f"127.0.0.1:{fr.port}" and err.value.unit == 5
        assert err.value.register == 0 and err.value.hint
        # the poll stops at the first failed request: one timeout per poll, not one per
        # request of the plan (counted, not timed)
        assert planned > 1 and requests_in_failed_poll == 1
        assert len(readings) == len(profile.load("eastron-sdm120").registers)
    asyncio.run(go())


def test_raw_responder_ok_mode_matches_the_driver() -> None:
    async def go() -> None:
        async with FaultResponder(image_for("carlo-gavazzi-em24"), unit=2) as fr:
            m = tcp_meter(fr.port, "carlo-gavazzi-em24", unit=2, proto="modbus-rtu-over-tcp")
            assert await m.probe()
            rs = {r.obis: r.value for r in await m.read(1)}
            await m.close()
        assert rs["1-0:32.7.0"] == 2301
    asyncio.run(go())


DEAD_TIMEOUT_S = 2.0
"""The silent meter's timeout: two local reads of the healthy meters end long before it
on any machine, so their finishing first says they did not wait for it."""


def test_meters_on_one_bus_share_a_client_and_a_silent_one_costs_only_its_timeout() -> None:
    async def go() -> None:
        p = profile.load("eastron-sdm630")
        async with MeterServer([SimUnit(1, p, MeterModel()), SimUnit(2, p, MeterModel())]) as a, \
                FaultResponder(image_for("eastron-sdm630"), unit=9, mode="silent") as silent:
            m1 = tcp_meter(a.tcp_port, "eastron-sdm630", unit=1, meter_id="m1")
            m2 = tcp_meter(a.tcp_port, "eastron-sdm630", unit=2, meter_id="m2")
            dead = tcp_meter(silent.port, "eastron-sdm630", unit=9, timeout=DEAD_TIMEOUT_S,
                             proto="modbus-rtu-over-tcp", meter_id="dead")
            assert m1.bus is m2.bus and m1.bus.users == 2 and dead.bus is not m1.bus
            finished: list[str] = []

            async def timed(m: ModbusMeter) -> float:
                t0 = time.monotonic()
                with contextlib.suppress(DeviceTimeout):
                    await m.read(1)
                finished.append(m.spec.meter_id)
                return time.monotonic() - t0

            _, _, td = await asyncio.gather(timed(m1), timed(m2), timed(dead))
            assert td >= DEAD_TIMEOUT_S * 0.9  # it waited its own timeout (a lower bound)
            assert finished[-1] == "dead" and set(finished[:2]) == {"m1", "m2"}
            assert silent.requests > 0
            for m in (m1, m2, dead):
                await m.close()
            assert m1.bus.users == 0
    asyncio.run(go())


def test_rtu_on_a_pseudo_terminal_two_units_one_bus(pty_pair: tuple[str, str]) -> None:
    gateway_end, meter_end = pty_pair

    async def go() -> None:
        units = [SimUnit(1, profile.load("eastron-sdm72d"), MeterModel()),
                 SimUnit(2, profile.load("carlo-gavazzi-em340"), MeterModel())]
        async with MeterServer(units, transport="rtu", port=meter_end):
            a = open_meter(MeterSpec("a", "modbus-rtu", port=gateway_end, unit=1,
                                     profile="eastron-sdm72d", baudrate=9600))
            b = open_meter(MeterSpec("b", "modbus-rtu", port=gateway_end, unit=2,
                                     profile="carlo-gavazzi-em340", baudrate=9600))
            ra, rb = await asyncio.gather(a.read(1), b.read(1))
            assert await a.probe() and await b.probe()
            await a.close()
            await b.close()
        assert {r.obis: r.value for r in ra}["1-0:32.7.0"] == 2301
        assert {r.obis: r.value for r in rb}["1-0:52.7.0"] == 2298
        assert isinstance(a, ModbusMeter) and a.bus.stats.tx_bytes > 0
    asyncio.run(go())


def test_serial_port_missing_and_settings_mismatch(tmp_path: object) -> None:
    async def go() -> None:
        m = open_meter(MeterSpec("x", "modbus-rtu", port="/dev/ttyNOPE9", profile="eastron-sdm120"))
        with pytest.raises(DeviceError, match="does not exist") as err:
            await m.read(1)
        assert "USB" in str(err.value)
        with pytest.raises(ConfigError, match="same settings"):
            open_meter(MeterSpec("y", "modbus-rtu", port="/dev/ttyNOPE9", baudrate=19200,
                                 profile="eastron-sdm120"))
        await m.close()
    asyncio.run(go())


@pytest.mark.parametrize("spec,key", [
    (MeterSpec("x", "modbus-tcp", host="h", profile="eastron-sdm120", unit=300), "unit"),
    (MeterSpec("x", "modbus-tcp", host="h"), "profile"),
    (MeterSpec("x", "modbus-tcp", profile="eastron-sdm120"), "host"),
    (MeterSpec("x", "modbus-rtu", port="/dev/x", parity="X", profile="eastron-sdm120"),
     "parity"),
    (MeterSpec("x", "modbus-tcp", host="h", profile="sunspec-meter"), "profile"),
])
def test_bad_spec_is_a_config_error_naming_the_field(spec: MeterSpec, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_meter(spec)
    assert err.value.path == key
