"""Poller: aligned intervals, one-at-a-time buses, timeouts and backoff that never stall
other meters, clock-step detection.

The poller runs on virtual time (:mod:`tests.support.virtualtime`) with a wall clock on
the same virtual time: every figure asserted here (how many polls, at which instants,
gaps between reads) follows from the poller's rules alone, never from how fast or how
loaded this machine is.
"""

from __future__ import annotations

import asyncio
import random

from agent.pipeline.poller import ClockWatch, Poller, PollTarget, next_tick
from ledger import Quality, Reading
from tests.support.agent import ScriptedMeter
from tests.support.virtualtime import WALL_EPOCH_S, VirtualTime, virtual_time


def target(m: ScriptedMeter, interval: float = 0.2, timeout: float = 0.1,
           backoff_max: float = 1.0) -> PollTarget:
    return PollTarget(m, m.spec.meter_id, "modbus-tcp", m.spec.bus, interval, timeout,
                      backoff_max)


def watch(vt: VirtualTime, threshold_ms: int = 1000) -> ClockWatch:
    return ClockWatch(threshold_ms, wall=vt.wall, mono=vt.mono)


async def run_for(poller: Poller, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 2)


def near(a: float, b: float, tol: float = 1e-6) -> bool:
    """Equal up to float rounding of the virtual clocks."""
    return abs(a - b) <= tol


def test_next_tick_is_the_next_wall_clock_multiple() -> None:
    assert next_tick(100.0, 10) == 110.0
    assert next_tick(104.9, 10) == 110.0
    assert next_tick(0.25, 0.5) == 0.5


def test_polls_are_aligned_to_wall_clock_boundaries() -> None:
    m = ScriptedMeter("a")
    got: list[tuple[list[Reading], int]] = []
    with virtual_time() as vt:
        poller = Poller([target(m, interval=0.25)], lambda r, t: got.append((list(r), t)),
                        watch(vt), wall=vt.wall)
        vt.run(run_for(poller, 1.3))
    # started at ...000.100 for 1.3 s: exactly the boundaries .250 .500 .750 001.000 .250
    base_ms = int(WALL_EPOCH_S) * 1000
    expected = [base_ms + 250 * k for k in range(1, 6)]
    assert len(m.now_ms) == len(expected), m.now_ms
    for ms, want in zip(m.now_ms, expected, strict=True):  # on the boundary (1 ms: rounding)
        assert abs(ms - want) <= 1, (m.now_ms, expected)
    assert [t for _, t in got] == m.now_ms
    assert poller.stats["a"].reads == len(m.now_ms)


def test_a_wake_up_just_before_the_tick_polls_that_tick_once() -> None:
    """A wall clock slewed 1 % slow against the loop's clock (NTP correcting it) wakes
    each wait a little before its tick: every tick is still polled once, none twice."""
    m = ScriptedMeter("a")
    with virtual_time() as vt:
        def slewed() -> float:
            return WALL_EPOCH_S + vt.mono() * 0.99

        poller = Poller([target(m, interval=0.2)], lambda r, t: None,
                        ClockWatch(1000, wall=slewed, mono=vt.mono), wall=slewed)
        vt.run(run_for(poller, 20.0))
    ticks = [round(ms / 200) for ms in m.now_ms]
    assert all(abs(ms - 200 * k) <= 3 for ms, k in zip(m.now_ms, ticks, strict=True))
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), m.now_ms  # no repeat
    assert len(ticks) >= 98  # 19.8 s of slewed wall time: every tick of 0.2 s


def test_hanging_meter_times_out_and_backs_off_without_delaying_others() -> None:
    bad = ScriptedMeter("bad")
    bad.hang = True
    good = ScriptedMeter("good")
    with virtual_time() as vt:
        poller = Poller([target(bad, timeout=0.1, backoff_max=0.8), target(good)],
                        lambda r, t: None, watch(vt), wall=vt.wall, rng=random.Random(1))
        vt.run(run_for(poller, 2.2))
    sb, sg = poller.stats["bad"], poller.stats["good"]
    assert sb.timeouts == sb.errors >= 2
    assert sb.consecutive_failures == sb.errors
    assert "no answer within 0.1 s" in (sb.last_error or "")
    # backoff: far fewer attempts than the 11 ticks of 0.2 s
    assert len(bad.calls) <= 6
    assert all(near(end - start, 0.1) for start, end in bad.calls)  # each cut at its timeout
    # the good meter kept its rhythm: one read on every one of the 11 ticks of 0.2 s
    assert sg.errors == 0 and sg.reads == 11
    gaps = [b[0] - a[0] for a, b in zip(good.calls, good.calls[1:], strict=False)]
    assert all(near(g, 0.2) for g in gaps), gaps


def test_failing_meter_recovers_and_resets_backoff() -> None:
    m = ScriptedMeter("a")
    m.failing = True

    async def scenario(poller: Poller) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        await asyncio.sleep(0.8)
        assert poller.stats["a"].consecutive_failures >= 2
        assert poller.stats["a"].backoff_s > 0
        m.failing = False
        await asyncio.sleep(0.8)
        stop.set()
        await task

    with virtual_time() as vt:
        poller = Poller([target(m, interval=0.1, timeout=0.05, backoff_max=0.3)],
                        lambda r, t: None, watch(vt), wall=vt.wall, rng=random.Random(1))
        vt.run(scenario(poller))
    st = poller.stats["a"]
    assert st.reads >= 1 and st.consecutive_failures == 0 and st.backoff_s == 0.0
    assert st.last_values == {"1-0:1.8.0": f"{m.value} Wh"}


def test_meters_on_one_bus_are_read_one_at_a_time_without_piling_up() -> None:
    meters = [ScriptedMeter(f"m{i}", bus="/dev/ttyUSB0", delay_s=0.08) for i in range(4)]
    with virtual_time() as vt:
        poller = Poller([target(m, interval=0.2, timeout=0.15) for m in meters],
                        lambda r, t: None, watch(vt), wall=vt.wall)
        vt.run(run_for(poller, 1.5))
    spans = sorted(c for m in meters for c in m.calls)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end - 1e-6, "two reads overlapped on one bus"
    # 4 x 80 ms per 200 ms tick cannot all fit: ticks are skipped, not queued
    skipped = sum(poller.stats[m.spec.meter_id].skipped_ticks for m in meters)
    assert skipped > 0
    assert all(len(m.calls) >= 2 for m in meters)
    # the bus never idles while a meter waits for it: back-to-back reads
    assert any(near(start, end) for (_, end), (start, _) in zip(spans, spans[1:],
                                                                 strict=False))
    busy = sum(e - s for s, e in spans)
    assert busy <= 1.5 + 1e-6  # reads one at a time fit into the time polled


def test_meters_on_different_buses_are_read_concurrently() -> None:
    meters = [ScriptedMeter(f"m{i}", bus=f"10.0.0.{i}", delay_s=0.08) for i in range(4)]
    with virtual_time() as vt:
        poller = Poller([target(m, interval=0.2, timeout=0.15) for m in meters],
                        lambda r, t: None, watch(vt), wall=vt.wall)
        vt.run(run_for(poller, 1.1))
    firsts = [m.calls[0] for m in meters]
    assert max(s for s, _ in firsts) < min(e for _, e in firsts)  # all four overlapped
    assert sum(poller.stats[m.spec.meter_id].skipped_ticks for m in meters) == 0


class SteppableClock:
    def __init__(self, vt: VirtualTime) -> None:
        self.vt = vt
        self.offset = 0.0

    def wall(self) -> float:
        return self.vt.wall() + self.offset


def test_clock_step_is_detected_and_flags_the_next_reading_of_every_meter() -> None:
    a, b = ScriptedMeter("a"), ScriptedMeter("b")
    got: list[Reading] = []

    async def scenario(poller: Poller, clock: SteppableClock) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        await asyncio.sleep(0.5)
        before = len(got)
        clock.offset = -3600.0  # NTP steps the clock back an hour
        await asyncio.sleep(0.7)
        stop.set()
        await task
        flagged = [r for r in got[before:] if r.quality & Quality.CLOCK_STEP]
        assert {r.meter_id for r in flagged} == {"a", "b"}
        assert len(flagged) == 2  # only the first reading after the step
        assert all(not r.quality & Quality.CLOCK_STEP for r in got[:before])
        assert len(got) > before + 2  # readings after the flagged ones are not flagged

    with virtual_time() as vt:
        clock = SteppableClock(vt)
        clockwatch = ClockWatch(500, wall=clock.wall, mono=vt.mono)
        poller = Poller([target(a, interval=0.2), target(b, interval=0.2)],
                        lambda r, t: got.extend(r), clockwatch, wall=clock.wall)
        vt.run(scenario(poller, clock))
    assert clockwatch.steps == 1
    assert clockwatch.last_step_s is not None and near(clockwatch.last_step_s, -3600.0)


def test_slow_drift_is_not_a_step() -> None:
    t = [1000.0]
    mono = [5.0]
    watch = ClockWatch(1000, wall=lambda: t[0], mono=lambda: mono[0])
    for _ in range(100):  # 0.5 ms/s slewing for 100 s adds up to 50 ms... and beyond
        t[0] += 1.0005 * 30
        mono[0] += 30
        watch.check()
    assert watch.steps == 0
    t[0] += 5
    assert watch.check() == 1


def test_invalid_readings_from_a_driver_are_counted_not_sealed() -> None:
    class Wrong(ScriptedMeter):
        async def read(self, now_ms: int) -> list[Reading]:
            return [Reading("other", "1-0:1.8.0", 1, 0, "Wh", now_ms),
                    Reading("w", "1-0:1.8.0", 1, 0, "W h", now_ms),
                    Reading.make("w", "1-0:1.8.0", 5, 0, "Wh", now_ms)]

    m = Wrong("w")
    got: list[Reading] = []
    with virtual_time() as vt:
        poller = Poller([target(m)], lambda r, t: got.extend(r), watch(vt), wall=vt.wall)
        vt.run(run_for(poller, 0.5))
    st = poller.stats["w"]
    assert st.invalid_readings == 2 * st.reads and st.reads >= 1
    assert {r.value for r in got} == {5}
