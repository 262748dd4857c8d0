"""The iec62056-21 driver against the D0 responder over real pseudo-terminals."""

from __future__ import annotations

import asyncio

import pytest

from drivers.base import MeterSpec, open_meter
from drivers.d0 import D0Meter
from drivers.iec62056 import ACK, BccError, ack_option_select, sign_on
from drivers.sim.d0 import D0SimConfig, D0Simulator
from ledger import ClockSource
from ledger.errors import ConfigError, DeviceTimeout, FrameError

NOW = 1_700_000_000_000


def d0(port: str, **options: object) -> D0Meter:
    opts: dict[str, object] = {"switch_delay_s": 0, "readout_timeout_s": 1.0, **options}
    meter = open_meter(MeterSpec("d0-test", "iec62056-21", port=port, options=opts))
    assert isinstance(meter, D0Meter)
    return meter


def read_once(meter: D0Meter) -> list:
    async def go() -> list:
        try:
            return await meter.read(NOW)
        finally:
            await meter.close()
    return asyncio.run(go())


def test_messages_are_the_standard_bytes() -> None:
    assert sign_on() == b"/?!\r\n"
    assert sign_on("12345678") == b"/?12345678!\r\n"
    assert ack_option_select("5") == b"\x06050\r\n"
    with pytest.raises(ValueError):
        ack_option_select("E")  # mode B character
    with pytest.raises(ValueError):
        sign_on("a!b")


def test_readout_gives_readings_and_counters_rise(d0_sim: D0Simulator) -> None:
    meter = d0(d0_sim.port)
    first = {r.obis: r for r in read_once(meter)}
    second = {r.obis: r for r in read_once(meter)}
    assert first["1-0:1.8.0"].value == 19_374_418 and first["1-0:1.8.0"].unit == "Wh"
    assert second["1-0:1.8.0"].value == 19_374_418 + 125
    assert first["1-0:32.7.0"].value == 2314 and first["1-0:32.7.0"].exponent == -1
    assert all(r.clock == ClockSource.GATEWAY and r.timestamp_ms == NOW for r in first.values())
    assert set(first) == {"1-0:1.8.0", "1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.0", "1-0:32.7.0",
                          "1-0:31.7.0"}
    assert d0_sim.acks == [bytes((ACK,)) + b"050\r\n"] * 2  # switched to the offered 9600
    assert meter.stats["readouts"] == 2
    assert meter.identification is not None and meter.identification.manufacturer == "MCS"
    assert meter.last_frame is not None and meter.last_frame[0] == 0x02


def test_max_baudrate_caps_the_switch(d0_sim: D0Simulator) -> None:
    read_once(d0(d0_sim.port, max_baudrate=2400))
    assert d0_sim.acks == [b"\x06030\r\n"]


@pytest.mark.parametrize(
    "d0_sim", [D0SimConfig(faults=frozenset({"echo", "garbage"}))], indirect=True)
def test_echoing_head_and_line_noise_are_tolerated(d0_sim: D0Simulator) -> None:
    assert len(read_once(d0(d0_sim.port))) == 6


@pytest.mark.parametrize("d0_sim", [D0SimConfig(address="4711")], indirect=True)
def test_device_address_in_sign_on(d0_sim: D0Simulator) -> None:
    with pytest.raises(DeviceTimeout):
        read_once(d0(d0_sim.port))  # an unaddressed sign-on gets no answer from it
    assert len(read_once(d0(d0_sim.port, address="4711"))) == 6


@pytest.mark.parametrize("d0_sim", [D0SimConfig(faults=frozenset({"bad-bcc"}))], indirect=True)
def test_bad_bcc_is_counted_and_raised(d0_sim: D0Simulator) -> None:
    meter = d0(d0_sim.port)
    with pytest.raises(BccError) as err:
        read_once(meter)
    assert err.value.expected != err.value.actual
    assert meter.stats["bcc_errors"] == 1 and meter.stats["readouts"] == 0


@pytest.mark.parametrize("d0_sim", [D0SimConfig(faults=frozenset({"silence"}))], indirect=True)
def test_silence_is_a_timeout_with_a_hint(d0_sim: D0Simulator) -> None:
    meter = d0(d0_sim.port)
    with pytest.raises(DeviceTimeout) as err:
        read_once(meter)
    assert err.value.bus == d0_sim.port and "identification" in str(err.value)
    assert err.value.hint and "optical head" in err.value.hint
    assert meter.stats["timeouts"] == 1


@pytest.mark.parametrize(
    "d0_sim", [D0SimConfig(faults=frozenset({"no-readout"}))], indirect=True)
def test_meter_that_stops_after_identifying_times_out(d0_sim: D0Simulator) -> None:
    with pytest.raises(DeviceTimeout, match="data message"):
        read_once(d0(d0_sim.port, readout_timeout_s=0.3))


@pytest.mark.parametrize("d0_sim", [D0SimConfig(faults=frozenset({"mode-b"}))], indirect=True)
def test_mode_b_meter_is_refused_clearly(d0_sim: D0Simulator) -> None:
    with pytest.raises(FrameError, match="not mode C"):
        read_once(d0(d0_sim.port))


def test_probe(d0_sim: D0Simulator) -> None:
    async def go() -> bool:
        meter = d0(d0_sim.port)
        try:
            return await meter.probe()
        finally:
            await meter.close()
    assert asyncio.run(go()) is True
    assert d0_sim.acks == []  # a probe only signs on


@pytest.mark.parametrize(
    ("options", "key"),
    [({"max_baudrate": 115200}, "options.max_baudrate"),
     ({"address": "x" * 40}, "options.address"),
     ({"readout_timeout_s": 0}, "options.readout_timeout_s")],
)
def test_bad_config_names_the_key(options: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_meter(MeterSpec("m", "iec62056-21", port="/dev/null", options=options))
    assert err.value.path == key
