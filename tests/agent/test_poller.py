"""Poller: aligned intervals, one-at-a-time buses, timeouts and backoff that never stall
other meters, clock-step detection."""

from __future__ import annotations

import asyncio
import random
import time

from agent.pipeline.poller import ClockWatch, Poller, PollTarget, next_tick
from ledger import Quality, Reading
from tests.support.agent import ScriptedMeter


def target(m: ScriptedMeter, interval: float = 0.2, timeout: float = 0.1,
           backoff_max: float = 1.0) -> PollTarget:
    return PollTarget(m, m.spec.meter_id, "modbus-tcp", m.spec.bus, interval, timeout,
                      backoff_max)


async def run_for(poller: Poller, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 2)


def test_next_tick_is_the_next_wall_clock_multiple() -> None:
    assert next_tick(100.0, 10) == 110.0
    assert next_tick(104.9, 10) == 110.0
    assert next_tick(0.25, 0.5) == 0.5


def test_polls_are_aligned_to_wall_clock_boundaries() -> None:
    m = ScriptedMeter("a")
    got: list[tuple[list[Reading], int]] = []
    poller = Poller([target(m, interval=0.25)], lambda r, t: got.append((list(r), t)),
                    ClockWatch(1000))
    asyncio.run(run_for(poller, 1.4))
    assert 4 <= len(m.now_ms) <= 6
    for ms in m.now_ms:  # each poll starts within 40 ms after a multiple of 250 ms
        assert ms % 250 < 40, m.now_ms
    assert [t for _, t in got] == m.now_ms
    assert poller.stats["a"].reads == len(m.now_ms)


def test_hanging_meter_times_out_and_backs_off_without_delaying_others() -> None:
    bad = ScriptedMeter("bad")
    bad.hang = True
    good = ScriptedMeter("good")
    poller = Poller([target(bad, timeout=0.1, backoff_max=0.8), target(good)],
                    lambda r, t: None, ClockWatch(1000), rng=random.Random(1))
    asyncio.run(run_for(poller, 2.2))
    sb, sg = poller.stats["bad"], poller.stats["good"]
    assert sb.timeouts == sb.errors >= 2
    assert sb.consecutive_failures == sb.errors
    assert "no answer within 0.1 s" in (sb.last_error or "")
    # backoff: far fewer attempts than the 11 ticks of 0.2 s
    assert len(bad.calls) <= 6
    # the good meter kept its rhythm: one read per 0.2 s tick
    assert sg.errors == 0 and sg.reads >= 9
    gaps = [b[0] - a[0] for a, b in zip(good.calls, good.calls[1:], strict=False)]
    assert max(gaps) < 0.3, gaps


def test_failing_meter_recovers_and_resets_backoff() -> None:
    m = ScriptedMeter("a")
    m.failing = True
    poller = Poller([target(m, interval=0.1, timeout=0.05, backoff_max=0.3)],
                    lambda r, t: None, ClockWatch(1000))

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        await asyncio.sleep(0.8)
        assert poller.stats["a"].consecutive_failures >= 2
        assert poller.stats["a"].backoff_s > 0
        m.failing = False
        await asyncio.sleep(0.8)
        stop.set()
        await task

    asyncio.run(scenario())
    st = poller.stats["a"]
    assert st.reads >= 1 and st.consecutive_failures == 0 and st.backoff_s == 0.0
    assert st.last_values == {"1-0:1.8.0": f"{m.value} Wh"}


def test_meters_on_one_bus_are_read_one_at_a_time_without_piling_up() -> None:
    meters = [ScriptedMeter(f"m{i}", bus="/dev/ttyUSB0", delay_s=0.08) for i in range(4)]
    poller = Poller([target(m, interval=0.2, timeout=0.15) for m in meters],
                    lambda r, t: None, ClockWatch(1000))
    asyncio.run(run_for(poller, 1.5))
    spans = sorted(c for m in meters for c in m.calls)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end - 1e-3, "two reads overlapped on one bus"
    # 4 x 80 ms per 200 ms tick cannot all fit: ticks are skipped, not queued
    skipped = sum(poller.stats[m.spec.meter_id].skipped_ticks for m in meters)
    assert skipped > 0
    assert all(len(m.calls) >= 2 for m in meters)
    busy = sum(e - s for s, e in spans)
    assert busy <= 1.5 + 0.1


def test_meters_on_different_buses_are_read_concurrently() -> None:
    meters = [ScriptedMeter(f"m{i}", bus=f"10.0.0.{i}", delay_s=0.08) for i in range(4)]
    poller = Poller([target(m, interval=0.2, timeout=0.15) for m in meters],
                    lambda r, t: None, ClockWatch(1000))
    asyncio.run(run_for(poller, 1.1))
    firsts = [m.calls[0] for m in meters]
    assert max(s for s, _ in firsts) < min(e for _, e in firsts)  # all four overlapped
    assert sum(poller.stats[m.spec.meter_id].skipped_ticks for m in meters) == 0


class SteppableClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def wall(self) -> float:
        return time.time() + self.offset


def test_clock_step_is_detected_and_flags_the_next_reading_of_every_meter() -> None:
    clock = SteppableClock()
    watch = ClockWatch(500, wall=clock.wall)
    a, b = ScriptedMeter("a"), ScriptedMeter("b")
    got: list[Reading] = []
    poller = Poller([target(a, interval=0.2), target(b, interval=0.2)],
                    lambda r, t: got.extend(r), watch, wall=clock.wall)

    async def scenario() -> None:
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

    asyncio.run(scenario())
    assert watch.steps == 1
    assert watch.last_step_s is not None and -3601 < watch.last_step_s < -3599


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
    poller = Poller([target(m)], lambda r, t: got.extend(r), ClockWatch(1000))
    asyncio.run(run_for(poller, 0.5))
    st = poller.stats["w"]
    assert st.invalid_readings == 2 * st.reads and st.reads >= 1
    assert {r.value for r in got} == {5}
