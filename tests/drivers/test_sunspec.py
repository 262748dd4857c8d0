"""SunSpec discovery and reading against a simulated inverter and meter on real servers."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from drivers import profile
from drivers.base import MeterSpec, open_meter
from drivers.sim.meter import MeterServer, SimUnit
from drivers.sim.model import MeterModel
from drivers.sim.sunspec import sunspec_unit
from drivers.sunspec import SunSpecMeter
from ledger.errors import DeviceError


@pytest.mark.parametrize("base", [40000, 0, 50000])
def test_inverter_found_at_each_base_and_energy_rises(base: int) -> None:
    async def go() -> None:
        model = MeterModel(import_w=Decimal(0), export_w=Decimal(3200), speed=36000.0,
                           start_export_wh=Decimal(5_000_000))
        async with MeterServer([sunspec_unit(126, model, "inverter", base)]) as srv:
            m = open_meter(MeterSpec("pv", "sunspec-tcp", host="127.0.0.1",
                                     tcp_port=srv.tcp_port, unit=126,
                                     profile="sunspec-inverter"))
            assert isinstance(m, SunSpecMeter)
            assert await m.probe()
            assert m.chain is not None and m.chain.base == base
            assert [x.model for x in m.chain.models] == [1, 103]
            a = {r.obis: r for r in await m.read(10)}
            await asyncio.sleep(0.05)
            b = {r.obis: r for r in await m.read(20)}
            await m.close()
        assert a["1-0:2.7.0"].value == 3200 and a["1-0:2.7.0"].unit == "W"
        assert a["1-0:14.7.0"].value == 5001 and a["1-0:14.7.0"].exponent == -2
        assert a["1-0:32.7.0"].value == 2301
        assert 5_000_000 <= a["1-0:2.8.0"].value < b["1-0:2.8.0"].value  # WH with SF=1
        assert a["1-0:2.8.0"].value % 10 == 0
    asyncio.run(go())


def test_meter_models_and_wrong_profile() -> None:
    async def go() -> None:
        model = MeterModel(import_w=Decimal(500), export_w=Decimal(2000))
        async with MeterServer([sunspec_unit(1, model, "meter")]) as srv:
            spec = MeterSpec("g", "sunspec-tcp", host="127.0.0.1", tcp_port=srv.tcp_port,
                             unit=1, profile="sunspec-meter")
            m = open_meter(spec)
            rs = {r.obis: r.value for r in await m.read(1)}
            inv = open_meter(MeterSpec("i", "sunspec-tcp", host="127.0.0.1",
                                       tcp_port=srv.tcp_port, unit=1))
            assert not await inv.probe()
            with pytest.raises(DeviceError, match="none of the models"):
                await inv.read(1)
            await m.close()
            await inv.close()
        assert rs["1-0:16.7.0"] == -1500 and rs["1-0:1.8.0"] == 1234567
    asyncio.run(go())


def test_plain_modbus_device_is_not_sunspec() -> None:
    async def go() -> None:
        unit = SimUnit(1, profile.load("eastron-sdm120"), MeterModel())
        async with MeterServer([unit]) as srv:
            m = open_meter(MeterSpec("x", "sunspec-tcp", host="127.0.0.1", tcp_port=srv.tcp_port,
                                     unit=1))
            assert not await m.probe()
            with pytest.raises(DeviceError, match="no SunSpec marker") as err:
                await m.read(1)
            await m.close()
        assert "unit id" in str(err.value)
    asyncio.run(go())


def test_default_inverter_simulator_reports_lifetime_generation() -> None:
    """The demo's inverter must show rooftop generation: its counter starts non-zero
    (0 is SunSpec's "not implemented" for acc32, which the driver rightly leaves out)."""
    async def go() -> dict[str, int]:
        async with MeterServer([sunspec_unit(1)]) as srv:
            m = open_meter(MeterSpec("pv", "sunspec-tcp", host="127.0.0.1",
                                     tcp_port=srv.tcp_port, unit=1))
            values = {r.obis: r.value for r in await m.read(0)}
            await m.close()
        return values
    values = asyncio.run(go())
    assert values["1-0:2.8.0"] >= 8_765_430
