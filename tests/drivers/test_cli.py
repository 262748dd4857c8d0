"""Technician CLI end to end: `meterchain scan/read/profile/drivers` against simulators."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest

from agent.cli import main
from drivers import profile
from drivers.sim.meter import MeterServer, SimUnit
from drivers.sim.model import MeterModel


@pytest.fixture
def sim_port() -> Iterator[int]:
    """A Modbus TCP server with an SDM630 at unit 3 and an EM24 at unit 9, in its own thread."""
    ready = threading.Event()
    box: dict[str, object] = {}

    async def serve() -> None:
        units = [SimUnit(3, profile.load("eastron-sdm630"), MeterModel(export_w=Decimal(100))),
                 SimUnit(9, profile.load("carlo-gavazzi-em24"), MeterModel())]
        async with MeterServer(units) as srv:
            box["port"] = srv.tcp_port
            stop = asyncio.Event()
            box["stop"], box["loop"] = stop, asyncio.get_running_loop()
            ready.set()
            await stop.wait()

    t = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    t.start()
    assert ready.wait(10)
    yield int(box["port"])  # type: ignore[call-overload]
    loop: asyncio.AbstractEventLoop = box["loop"]  # type: ignore[assignment]
    loop.call_soon_threadsafe(box["stop"].set)  # type: ignore[attr-defined]
    t.join(10)


def test_read_prints_quantity_obis_value_unit(sim_port: int,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["read", "--host", "127.0.0.1", "--tcp-port", str(sim_port), "--unit", "3",
               "--profile", "eastron-sdm630", "--raw"])
    out, err = capsys.readouterr()
    assert rc == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert rows["voltage_l1"] == ["1-0:32.7.0", "230.1", "(rounded)", "V"]
    assert "1-0:2.8.0" in out and "-> " in err and "<- " in err


def test_scan_finds_devices_and_suggests_profiles(sim_port: int,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["scan", "--host", "127.0.0.1", "--tcp-port", str(sim_port), "--ids", "1-10",
               "--timeout", "0.2"])
    out, err = capsys.readouterr()
    assert rc == 0
    lines = {line.split()[1]: line for line in out.splitlines()[2:]}
    assert set(lines) == {"3", "9"}
    assert "eastron-sdm630" in lines["3"] and "carlo-gavazzi-em24" in lines["9"]
    assert "carlo-gavazzi-em340" not in lines["9"]
    assert "10/10" in err  # progress bar on stderr


def test_errors_say_what_to_check(sim_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["read", "--host", "127.0.0.1", "--tcp-port", str(sim_port), "--unit", "3",
               "--profile", "abb-b2x"])
    assert rc == 2 and "profile does not match" in capsys.readouterr().err
    rc = main(["read", "--port", "/dev/ttyNOPE7", "--profile", "eastron-sdm120"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    rc = main(["read", "--host", "127.0.0.1", "--tcp-port", "1", "--profile", "eastron-sdm120"])
    assert rc == 2 and "cannot connect" in capsys.readouterr().err


def test_profile_and_drivers_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "show", "carlo-gavazzi-em24"]) == 0
    out = capsys.readouterr().out
    assert any(line.split()[:3] == ["voltage_l1", "1-0:32.7.0", "V"]
               for line in out.splitlines()) and "datasheet" in out
    assert main(["drivers"]) == 0
    out = capsys.readouterr().out
    assert "modbus-rtu-over-tcp" in out and "sunspec-tcp" in out and "abb-b2x" in out
