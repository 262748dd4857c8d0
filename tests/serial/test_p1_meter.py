"""The dsmr-p1 driver against the P1 simulator over real pseudo-terminals."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable

import pytest

from drivers.base import MeterSpec, open_meter
from drivers.dsmr import VARIANTS
from drivers.p1 import P1Meter
from drivers.sim.p1 import P1SimConfig, P1Simulator, P1State, meter_time
from ledger import ClockSource, Quality
from ledger.errors import ConfigError, DeviceError, DeviceTimeout, FrameError

NOW = 1_700_000_000_000
LIMIT_S = 30.0
"""Waits for a state fail only after this long (a hang, never a slow machine)."""


async def _until(cond: Callable[[], bool]) -> None:
    """Wait for ``cond`` however fast this machine is (up to LIMIT_S)."""
    deadline = time.monotonic() + LIMIT_S
    while not cond():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)


def p1(port: str, variant: str = "v5", timeout: float = 2.0, **extra: object) -> P1Meter:
    spec = MeterSpec("p1-test", "dsmr-p1", port=port,
                     options={"variant": variant, "telegram_timeout_s": timeout, **extra})
    meter = open_meter(spec)
    assert isinstance(meter, P1Meter)
    return meter


def by_obis(readings: list) -> dict:
    return {r.obis: r for r in readings}


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "auto"])
def test_reads_each_variant_from_the_simulator(variant: str) -> None:
    async def go() -> None:
        with P1Simulator(P1SimConfig(variant=variant)) as sim:
            meter = p1(sim.port, variant)
            try:
                readings = by_obis(await meter.read(NOW))
            finally:
                await meter.close()
        assert meter.stats["telegrams"] == 1 and meter.stats["crc_errors"] == 0
        state = sim.state
        if variant == "lu":
            assert readings["1-0:1.8.0"].value >= sum(P1State().import_wh)
        else:
            assert readings["1-0:1.8.1"].unit == "Wh"
            assert readings["1-0:1.8.2"].value >= P1State().import_wh[1]
        assert readings["1-0:1.7.0"].value * 10 ** readings["1-0:1.7.0"].exponent == (
            state.import_w if variant not in ("v2.2", "v3") else state.import_w // 10 * 10)
        r = readings["1-0:1.7.0"]
        if variant in ("v2.2", "v3"):  # no meter time: gateway clock
            assert (r.clock, r.timestamp_ms) == (ClockSource.GATEWAY, NOW)
        else:  # July simulated: summer time flag S
            assert r.clock == ClockSource.METER
            assert r.quality & Quality.METER_DST
    asyncio.run(go())


@pytest.mark.parametrize(
    "p1_sim", [P1SimConfig(state=P1State(import_w=36_000))], indirect=True)  # 10 Wh a second
def test_counters_rise_between_reads_and_meter_time_advances(p1_sim: P1Simulator) -> None:
    async def go() -> None:
        meter = p1(p1_sim.port)
        try:
            first = by_obis(await meter.read(NOW))
            second = by_obis(await meter.read(NOW))
        finally:
            await meter.close()
        assert second["1-0:1.8.2"].value > first["1-0:1.8.2"].value
        assert second["1-0:1.8.2"].timestamp_ms > first["1-0:1.8.2"].timestamp_ms
        assert meter.last_telegram is not None
        assert meter.last_telegram.raw.startswith(b"/ISK5")
        mt = meter_time(p1_sim.state.utc)
        assert mt.endswith("S")
    asyncio.run(go())


@pytest.mark.parametrize(
    "p1_sim", [P1SimConfig(faults=frozenset({"bad-crc"}), fault_every=2)], indirect=True)
def test_bad_crc_is_counted_and_skipped(p1_sim: P1Simulator) -> None:
    async def go() -> None:
        meter = p1(p1_sim.port)
        try:
            for _ in range(4):
                readings = await meter.read(NOW)
                assert len(readings) == 19
        finally:
            await meter.close()
        assert meter.stats["telegrams"] == 4
        assert meter.stats["crc_errors"] >= 2  # every other telegram is bad
        assert "CRC mismatch" in str(meter.last_error)
    asyncio.run(go())


@pytest.mark.parametrize(
    "p1_sim", [P1SimConfig(faults=frozenset({"garbage"}), fault_every=1)], indirect=True)
def test_garbage_between_telegrams_does_not_stop_reading(p1_sim: P1Simulator) -> None:
    async def go() -> None:
        meter = p1(p1_sim.port)
        try:
            for _ in range(3):
                assert len(await meter.read(NOW)) == 19
        finally:
            await meter.close()
        assert meter.stats["telegrams"] == 3
    asyncio.run(go())


@pytest.mark.parametrize(
    "p1_sim", [P1SimConfig(faults=frozenset({"garbage", "bad-crc"}), fault_every=1)],
    indirect=True)
def test_only_bad_telegrams_give_frame_error_and_counts(p1_sim: P1Simulator) -> None:
    async def go() -> None:
        meter = p1(p1_sim.port, timeout=0.8)
        try:
            with pytest.raises(FrameError) as err:
                await meter.read(NOW)
            assert await meter.probe() is False
        finally:
            await meter.close()
        assert meter.stats["telegrams"] == 0
        assert meter.stats["crc_errors"] >= 2
        assert meter.stats["garbage_bytes"] > 0  # noise after the first telegram is garbage
        assert err.value.bus == p1_sim.port
        assert "no good telegram" in str(err.value) and "CRC" in str(err.value)
    asyncio.run(go())


@pytest.mark.parametrize(
    "p1_sim", [P1SimConfig(faults=frozenset({"truncated"}), fault_every=2)], indirect=True)
def test_truncated_telegrams_are_counted_and_skipped(p1_sim: P1Simulator) -> None:
    async def go() -> None:
        meter = p1(p1_sim.port)
        try:
            for _ in range(3):
                assert len(await meter.read(NOW)) == 19
        finally:
            await meter.close()
        assert meter.stats["truncated"] >= 1
    asyncio.run(go())


@pytest.mark.parametrize("p1_sim", [P1SimConfig(faults=frozenset({"silence"}))], indirect=True)
def test_silence_is_a_timeout_naming_port_and_what_to_check(p1_sim: P1Simulator) -> None:
    async def go() -> None:
        meter = p1(p1_sim.port, timeout=0.4)
        try:
            with pytest.raises(DeviceTimeout) as err:
                await meter.read(NOW)
            with pytest.raises(DeviceTimeout):
                await meter.probe()
        finally:
            await meter.close()
        e = err.value
        assert e.bus == p1_sim.port and p1_sim.port in str(e)
        assert e.hint and "115200 8N1" in e.hint and "9600 7E1" in e.hint
        assert meter.stats["timeouts"] == 2
    asyncio.run(go())


def test_probe_finds_a_p1_meter(p1_sim: P1Simulator) -> None:
    async def go() -> bool:
        meter = p1(p1_sim.port)
        try:
            return await meter.probe()
        finally:
            await meter.close()
    assert asyncio.run(go()) is True


@pytest.mark.parametrize("p1_sim", [P1SimConfig(faults=frozenset({"silence"}))], indirect=True)
def test_event_loop_keeps_running_during_a_read(p1_sim: P1Simulator) -> None:
    """A read waiting for a telegram (on a silent port, so it surely waits) leaves the
    event loop free: it ticks while the read is in progress."""
    async def go() -> None:
        meter = p1(p1_sim.port, timeout=LIMIT_S)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        read = asyncio.create_task(meter.read(NOW))
        tick = asyncio.create_task(ticker())
        try:
            await _until(lambda: meter._port is not None)  # the read holds the port
            ticks = 0
            await _until(lambda: ticks >= 3 or read.done())
            assert not read.done() and ticks >= 3
        finally:
            tick.cancel()
            await meter.close()
        with pytest.raises(DeviceError, match="closed during a read"):
            await read
    asyncio.run(go())


def test_missing_port_says_so(tmp_path: os.PathLike[str]) -> None:
    async def go() -> None:
        meter = p1(os.path.join(tmp_path, "ttyUSB9"))
        with pytest.raises(DeviceError) as err:
            await meter.read(NOW)
        assert "does not exist" in str(err.value) and err.value.hint
    asyncio.run(go())


@pytest.mark.parametrize(
    ("options", "key"),
    [({"variant": "v6"}, "options.variant"),
     ({"telegram_timeout_s": -1}, "options.telegram_timeout_s"),
     ({"telegram_timeout_s": "soon"}, "options.telegram_timeout_s")],
)
def test_bad_config_names_the_key(options: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_meter(MeterSpec("m", "dsmr-p1", port="/dev/null", options=options))
    assert err.value.path == key
    with pytest.raises(ConfigError) as err:
        open_meter(MeterSpec("m", "dsmr-p1"))
    assert err.value.path == "port"


def test_variant_sets_serial_defaults() -> None:
    old = P1Meter(MeterSpec("m", "dsmr-p1", port="/dev/null", options={"variant": "v2.2"}))
    new = P1Meter(MeterSpec("m", "dsmr-p1", port="/dev/null", options={"variant": "v5"}))
    assert (old.config.baudrate, old.config.bytesize, old.config.parity) == (9600, 7, "E")
    assert (new.config.baudrate, new.config.bytesize, new.config.parity) == (115200, 8, "N")
    assert old.config.telegram_timeout_s == 21.0  # two 10 s intervals + 1 s
    forced = P1Meter(MeterSpec("m", "dsmr-p1", port="/dev/null", baudrate=9600, parity="n"))
    assert (forced.config.baudrate, forced.config.parity) == (9600, "N")


@pytest.mark.parametrize("p1_sim", [P1SimConfig(faults=frozenset({"silence"}))], indirect=True)
def test_close_interrupts_a_waiting_read_and_frees_the_port(p1_sim: P1Simulator) -> None:
    async def go() -> float:
        meter = p1(p1_sim.port, timeout=30.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        task = asyncio.create_task(meter.read(NOW))
        await _until(lambda: meter._port is not None)  # the read is waiting on the port
        await meter.close()
        with pytest.raises(DeviceError, match="closed during a read"):
            await task
        took = loop.time() - start
        again = p1(p1_sim.port, timeout=0.3)  # the port is opened exclusively: free again?
        with pytest.raises(DeviceTimeout):
            await again.read(NOW)
        await again.close()
        return took
    assert asyncio.run(go()) < 5.0


def test_last_frame_is_the_telegram_read(p1_sim: P1Simulator) -> None:
    async def go() -> None:
        meter = p1(p1_sim.port)
        assert meter.last_frame is None
        try:
            await meter.read(NOW)
        finally:
            await meter.close()
        assert meter.last_frame is not None and meter.last_frame.endswith(b"\r\n")
        assert meter.last_frame.startswith(b"/ISK5\\2M550T-1012\r\n")
    asyncio.run(go())


def test_poll_with_a_timeout_shorter_than_the_push_interval_reads_the_buffered_telegram() -> None:
    """DSMR 4 pushes every 10 s and the agent polls with timeout_s < poll_interval_s: a read
    must not wait for the NEXT telegram (it could miss it forever, depending on phase) but
    take the one already waiting on the port. Here: pushes every 0.6 s, timeout 0.2 s."""
    async def go() -> list[tuple[int, int]]:
        with P1Simulator(P1SimConfig(interval_s=0.6)) as sim:
            meter = p1(sim.port, timeout=0.2)
            pushed = []
            try:
                with contextlib.suppress(DeviceTimeout):  # opens (and flushes) the port
                    await meter.read(NOW)
                for _ in range(3):
                    idle = sim.sent["good"]
                    await _until(lambda idle=idle: sim.sent["good"] > idle)  # type: ignore[misc]
                    await asyncio.sleep(0.05)  # (counted just before it is written)
                    before = sim.sent["good"]  # a telegram arrived while nobody read
                    assert len(await meter.read(NOW)) == 19
                    pushed.append((before, sim.sent["good"]))
            finally:
                await meter.close()
        assert meter.stats["timeouts"] <= 1  # only the read that opened the port may miss
        return pushed
    pushed = asyncio.run(go())
    # answered from the buffer: no telegram was pushed while a read ran (counted, not timed)
    assert all(after == before > 0 for before, after in pushed), pushed


@pytest.mark.parametrize(
    "p1_sim", [P1SimConfig(interval_s=0.1, faults=frozenset({"bad-crc"}), fault_every=2)],
    indirect=True)
def test_buffered_telegrams_give_the_newest_good_one_and_count_bad_crcs(
        p1_sim: P1Simulator) -> None:
    async def go() -> tuple[int, int, int]:
        meter = p1(p1_sim.port)
        try:
            first = by_obis(await meter.read(NOW))["1-0:1.8.2"].timestamp_ms
            crc_before = meter.stats["crc_errors"]
            # 5 telegrams pushed, every other one with a bad CRC; a pty holds 4 KiB, about
            # five v5 telegrams, and the simulator drops what does not fit (as a UART would)
            sent0 = sum(p1_sim.sent.values())
            await _until(lambda: sum(p1_sim.sent.values()) >= sent0 + 5)
            second = by_obis(await meter.read(NOW))["1-0:1.8.2"].timestamp_ms
        finally:
            await meter.close()
        return first, second, meter.stats["crc_errors"] - crc_before
    first, second, bad = asyncio.run(go())
    # each telegram advances the meter clock by one DSMR 5 interval (1 s): the newest buffered
    # good telegram is several seconds of meter time on, the oldest would be about one
    assert second - first >= 3_000
    assert bad >= 2  # the bad ones in the buffer were checked, counted and skipped
