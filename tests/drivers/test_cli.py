"""Technician CLI end to end: `meterchain scan/read/profile/drivers` against simulators."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from drivers import profile
from drivers.base import MeterSpec, open_meter
from drivers.sim.faults import FaultResponder
from drivers.sim.meter import MeterServer, SimUnit, live_image
from drivers.sim.model import MeterModel
from ledger.errors import DeviceExceptionResponse
from meterchain.cli import main


@pytest.fixture
def sim_port() -> Iterator[int]:
    """A Modbus TCP server in its own thread: SDM630 at unit 3, SDM120 at 5, SDM72D at 6 and
    EM24 at 9."""
    ready = threading.Event()
    box: dict[str, object] = {}

    async def serve() -> None:
        units = [SimUnit(3, profile.load("eastron-sdm630"), MeterModel(export_w=Decimal(100))),
                 SimUnit(5, profile.load("eastron-sdm120"), MeterModel()),
                 SimUnit(6, profile.load("eastron-sdm72d"), MeterModel()),
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
    lines = {line.split()[1]: line.split(None, 2)[2] for line in out.splitlines()[2:]}
    assert set(lines) == {"3", "5", "6", "9"}
    # the model-code register tells Eastron models apart that share the voltage probe
    assert lines["3"] == "eastron-sdm630" and lines["6"] == "eastron-sdm72d"
    assert lines["9"] == "carlo-gavazzi-em24"
    # no model code is known for the single-phase models: say so, do not guess
    assert lines["5"].startswith("one of: eastron-sdm120, eastron-sdm220, eastron-sdm230 (")
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


def run_cli_against(mode: str, before: tuple[str, ...] = (),
                    after: tuple[str, ...] = ()) -> tuple[int, str]:
    """`meterchain [before] read ... [after]` in a subprocess against a fault responder.

    A subprocess, so logging is configured exactly as on a technician's console.
    """
    image = live_image(SimUnit(1, profile.load("eastron-sdm120"), MeterModel()))

    async def go() -> tuple[int, str]:
        async with FaultResponder(image, unit=5, mode=mode) as fr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "meterchain", *before, "read", "--host", "127.0.0.1",
                "--tcp-port", str(fr.port), "--rtu-over-tcp", "--unit", "5", "--profile",
                "eastron-sdm120", "--timeout", "0.3", *after,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _, err = await proc.communicate()
        return int(proc.returncode or 0), err.decode()
    return asyncio.run(go())


@pytest.mark.parametrize("mode,text", [("silent", "no answer within 0.3 s"),
                                       ("bad-crc", "formed no valid frame")])
def test_read_failure_prints_exactly_one_line_on_stderr(mode: str, text: str) -> None:
    rc, err = run_cli_against(mode)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("meterchain read: error: ") and text in err


def test_verbose_shows_pymodbus_and_raw_shows_frames() -> None:
    rc, err = run_cli_against("silent", before=("-v",))
    assert rc == 2 and "pymodbus" in err and "send: 0x5 0x4" in err
    rc, err = run_cli_against("silent", after=("--raw",))
    lines = err.splitlines()
    assert rc == 2 and "pymodbus" not in err
    assert lines[0] == "-> 05 04 00 00 00 50 f1 b2" and lines[-1].startswith("meterchain read:")


@pytest.mark.parametrize("argv,flag,text", [
    (["read", "--host", "127.0.0.1", "--port", "5020", "--profile", "eastron-sdm120"],
     "--port", "use --tcp-port 5020"),
    (["scan", "--host", "127.0.0.1", "--port", "5020"], "--port", "use --tcp-port 5020"),
    (["read", "--port", "/dev/ttyNOPE3", "--baud", "0", "--profile", "eastron-sdm120"],
     "--baud", "0 is not a standard baud rate"),
    (["read", "--port", "/dev/ttyNOPE3", "--baud", "9601", "--profile", "eastron-sdm120"],
     "--baud", "9601 is not a standard baud rate"),
    (["scan", "--port", "/dev/ttyNOPE3", "--baud", "9600,0"], "--baud",
     "0 is not a standard baud rate"),
    (["scan", "--port", "/dev/ttyNOPE3", "--parity", "N,X"], "--parity", "not N, E or O"),
    (["scan", "--host", "127.0.0.1", "--ids", "0-2"], "--ids", "unit ids are 1..247"),
    (["scan", "--host", "127.0.0.1", "--timeout", "0"], "--timeout", "not in (0, 60]"),
])
def test_bad_flags_are_refused_naming_the_flag(argv: list[str], flag: str, text: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and f"error: {flag}: " in err and text in err, err
    assert "does not exist" not in err


def test_exception_4_hint_names_the_unit_id_first() -> None:
    image = live_image(SimUnit(1, profile.load("eastron-sdm120"), MeterModel()))

    async def go() -> DeviceExceptionResponse:
        async with FaultResponder(image, unit=5, mode="exception", exception_code=4) as fr:
            m = open_meter(MeterSpec("m", "modbus-rtu-over-tcp", host="127.0.0.1",
                                     tcp_port=fr.port, unit=5, profile="eastron-sdm120"))
            try:
                with pytest.raises(DeviceExceptionResponse) as err:
                    await m.read(1)
            finally:
                await m.close()
        return err.value
    err = asyncio.run(go())
    assert err.code == 4 and err.hint is not None
    assert err.hint.index("unit id") < err.hint.index("power-cycle")


def test_read_prints_every_value_and_marks_refused_registers(
        sim_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    """An SDM120 read with the three-phase SDM630 profile: the per-phase energy registers
    do not exist on it (exception 2). Everything else is printed; those are marked."""
    rc = main(["read", "--host", "127.0.0.1", "--tcp-port", str(sim_port), "--unit", "5",
               "--profile", "eastron-sdm630"])
    out = capsys.readouterr().out
    assert rc == 1
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    obis, value = rows["energy_import"].split()[1:3]
    assert obis == "1-0:1.8.0" and value.isdigit()
    assert "FAILED" not in rows["voltage_l1"] and "FAILED" not in rows["energy_import"]
    for name, register in (("energy_import_l1", 346), ("energy_export_l3", 356)):
        assert "FAILED" in rows[name]
        assert f"register {register}] device answered function 4 with exception 2" in rows[name]


def test_read_config_reads_every_configured_meter_once(
        sim_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "agent.toml"
    meters = "".join(
        f'\n[[meters]]\nid = "{mid}"\ndriver = "modbus-tcp"\nhost = "127.0.0.1"\n'
        f'tcp_port = {sim_port}\nunit = {unit}\nprofile = "{prof}"\n'
        for mid, unit, prof in (("main", 3, "eastron-sdm630"), ("heat", 5, "eastron-sdm120"),
                                ("gone", 8, "eastron-sdm120")))
    cfg.write_text('[gateway]\nkey_path = "/nonexistent/gateway.key"\nledger_dir = "/x"\n'
                   f'state_path = "/x/state.json"\n{meters}')
    assert main(["read", "--config", str(cfg)]) == 1  # "gone" does not answer
    out, err = capsys.readouterr()
    by_meter: dict[str, list[str]] = {}
    for line in out.splitlines()[2:]:
        by_meter.setdefault(line.split()[0], []).append(line)
    assert out.splitlines()[0].split()[:5] == ["meter", "quantity", "obis", "value", "unit"]
    assert any(ln.split()[1:3] == ["voltage_l1", "1-0:32.7.0"] for ln in by_meter["main"])
    assert any(ln.split()[1:3] == ["energy_import", "1-0:1.8.0"] for ln in by_meter["heat"])
    assert len(by_meter["gone"]) == 1 and "FAILED" in by_meter["gone"][0]
    assert "3 meter(s) read once" in err and "1 with failures" in err
    assert main(["read", "--config", str(cfg), "--meter", "heat"]) == 0
    out = capsys.readouterr().out
    assert {line.split()[0] for line in out.splitlines()[2:]} == {"heat"}
    assert main(["read", "--config", str(cfg), "--meter", "nope"]) == 2
    assert "no meter 'nope'" in capsys.readouterr().err
    # a meter config problem is refused as config check refuses it
    cfg.write_text(cfg.read_text().replace('unit = 3', 'unit = 0'))
    assert main(["read", "--config", str(cfg)]) == 2
    assert "meters[0].unit: must be 1..247, got 0" in capsys.readouterr().err


def test_read_p1_says_it_is_waiting_and_for_how_long(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The wait said is the driver's own: for DSMR 5 (a telegram a second) 2 x 1 s + 1 s."""
    from drivers.sim.serialpty import open_pty

    silent = open_pty()
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[gateway]\nkey_path = "/k"\nledger_dir = "/l"\nstate_path = "/s/s.json"\n'
                   f'[[meters]]\nid = "grid"\ndriver = "dsmr-p1"\nport = "{silent.path}"\n'
                   'timeout_s = 0.5\noptions = {{ variant = "v5" }}\n'.replace("{{", "{")
                   .replace("}}", "}"))
    try:
        t0 = time.monotonic()
        assert main(["read", "--config", str(cfg)]) == 1
        took = time.monotonic() - t0
        out, err = capsys.readouterr()
    finally:
        silent.close()
    assert err.splitlines()[0].startswith(
        f"grid: waiting up to 3 s for a P1 telegram on {silent.path}")
    assert "no data on P1 port" in out and "in 3 s" in out
    assert took >= 3.0  # it waited as long as it said (a lower bound: no speed assumption)


def _serve_in_thread(units: list[SimUnit]) -> tuple[int, Callable[[], None]]:
    """A Modbus TCP MeterServer on its own thread: (port, stop)."""
    ready = threading.Event()
    box: dict[str, object] = {}

    async def serve() -> None:
        async with MeterServer(units) as srv:
            box["port"] = srv.tcp_port
            stop = asyncio.Event()
            box["stop"], box["loop"] = stop, asyncio.get_running_loop()
            ready.set()
            await stop.wait()

    t = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    t.start()
    assert ready.wait(10)

    def stop() -> None:
        loop: asyncio.AbstractEventLoop = box["loop"]  # type: ignore[assignment]
        loop.call_soon_threadsafe(box["stop"].set)  # type: ignore[attr-defined]
        t.join(10)
    return int(box["port"]), stop  # type: ignore[call-overload]


def test_sunspec_read_prints_every_point_and_marks_refused_registers(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A SunSpec inverter whose model 103 lacks the frequency registers (Hz, Hz_SF): the
    model's one request is refused (exception 2), so each point is read on its own;
    every other point is printed, the frequency is marked with its register's error."""
    from drivers.sim.sunspec import sunspec_image
    from drivers.sunspec import _INVERTER

    model = MeterModel(import_w=Decimal(0), export_w=Decimal(3200),
                       start_export_wh=Decimal(8_765_430))
    image = sunspec_image(model)
    data = next(a + 2 for (_f, a), w in image.items()
                if w == 103 and image.get((3, a + 1)) == 50)  # model 103: ID, L, data
    hz = data + _INVERTER["Hz"][0]
    gone = {(3, hz), (3, data + _INVERTER["Hz_SF"][0])}

    def holes() -> dict[tuple[int, int], int]:
        return {k: v for k, v in sunspec_image(model).items() if k not in gone}

    port, stop = _serve_in_thread([SimUnit(1, profile.load("sunspec-inverter"),
                                           image_fn=holes)])
    try:
        rc = main(["read", "--host", "127.0.0.1", "--tcp-port", str(port), "--unit", "1",
                   "--profile", "sunspec-inverter"])
    finally:
        stop()
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    rows = {line.split()[1]: line for line in out.splitlines()[2:]}
    assert rc == 1, out + err
    assert rows["1-0:2.7.0"].split()[2] == "3200"  # W
    assert "FAILED" not in rows["1-0:2.8.0"] and "FAILED" not in rows["1-0:32.7.0"]
    assert "FAILED" in rows["1-0:14.7.0"]
    assert f"register {hz}] device answered function 3 with exception 2" in rows["1-0:14.7.0"]
    assert "model 103 point Hz" in rows["1-0:14.7.0"]
