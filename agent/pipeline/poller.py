"""Polls meters on their own wall-clock-aligned intervals and hands readings to a sink.

Each meter runs in its own asyncio task: it sleeps until the next multiple of its
``poll_interval_s`` on the wall clock (10 s -> :00, :10, :20 ...), takes its bus's lock
(meters on one serial bus are read one at a time), reads with a per-meter timeout and
passes the readings on. A meter's task never queues more than one poll: ticks that
pass while it waits for its bus or its read are skipped and counted. A failing meter
backs off exponentially with jitter, up to ``backoff_max_s``, in its own task, so it
never delays the others. Each tick is polled at most once, also when a wait ends a hair
before its tick (timer granularity, a wall clock slewed slow against the monotonic one).

A wall-clock step (NTP setting the clock) is detected by comparing wall-clock and
monotonic deltas (:class:`ClockWatch`); it is logged and the next reading of every
meter carries ``Quality.CLOCK_STEP``. Time never goes backwards in the chain: the
sealer clamps block time spans (see :mod:`agent.pipeline.sealer`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.pipeline.backoff import backoff_delay, stopped_within
from drivers.base import Meter
from ledger import SALT_SIZE, Quality, Reading, encode_reading
from ledger.errors import DeviceError, DeviceTimeout

BACKOFF_JITTER = 0.5
"""A failing meter's wait is shortened by a random fraction in [0, 0.5)."""

log = logging.getLogger("meterchain.poller")

ReadingSink = Callable[[Sequence[Reading], int], None]
"""Called with the readings of one poll and the gateway time (ms) the poll started."""

_ZERO_SALT = bytes(SALT_SIZE)


class ClockWatch:
    """Detects steps of the wall clock against the monotonic clock.

    ``offset = wall - monotonic`` stays constant while the wall clock runs freely (NTP
    slewing changes it by at most ~0.5 ms/s); a change larger than ``threshold_ms`` is
    a step. ``steps`` counts them; callers compare it with the value they saw last.
    """

    def __init__(self, threshold_ms: int, *, wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic) -> None:
        self.threshold_s = threshold_ms / 1000.0
        self._wall = wall
        self._mono = mono
        self._offset = wall() - mono()
        self.steps = 0
        self.last_step_s: float | None = None
        """Size of the last step in seconds (negative: the clock went back)."""

    def check(self) -> int:
        """Compare the clocks now; log and count a step. Returns the step count."""
        offset = self._wall() - self._mono()
        delta = offset - self._offset
        if abs(delta) > self.threshold_s:
            self.steps += 1
            self.last_step_s = delta
            log.warning("gateway clock stepped %+.3f s (wall clock against monotonic); "
                        "readings are flagged CLOCK_STEP and block times are clamped so the "
                        "chain never goes backwards", delta)
            self._offset = offset
        else:  # follow slow slewing so drift never adds up to a false step
            self._offset = offset
        return self.steps


@dataclass
class MeterStats:
    """Counters and last values of one meter (shown by status and metrics)."""

    meter_id: str
    driver: str
    bus: str
    interval_s: float
    reads: int = 0
    errors: int = 0
    timeouts: int = 0
    skipped_ticks: int = 0
    invalid_readings: int = 0
    readings: int = 0
    consecutive_failures: int = 0
    last_success_ms: int | None = None
    last_error: str | None = None
    last_error_ms: int | None = None
    backoff_s: float = 0.0
    last_values: dict[str, str] = field(default_factory=dict)
    """OBIS code -> ``"230.4 V"`` from the last successful read."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PollTarget:
    """One meter to poll, with its limits (from ``[[meters]]``)."""

    meter: Meter
    meter_id: str
    driver: str
    bus: str
    interval_s: float
    timeout_s: float
    backoff_max_s: float


def next_tick(now_s: float, interval_s: float) -> float:
    """The first wall-clock multiple of ``interval_s`` strictly after ``now_s``."""
    return (math.floor(now_s / interval_s) + 1) * interval_s


class Poller:
    """Runs one task per meter; see the module docstring."""

    def __init__(
        self,
        targets: Sequence[PollTarget],
        sink: ReadingSink,
        clock: ClockWatch,
        *,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.targets = list(targets)
        self.sink = sink
        self.clock = clock
        self._wall = wall
        self._rng = rng or random.Random()
        self._bus_locks: dict[str, asyncio.Lock] = {}
        self.stats: dict[str, MeterStats] = {
            t.meter_id: MeterStats(t.meter_id, t.driver, t.bus, t.interval_s)
            for t in self.targets
        }
        self._seen_steps: dict[str, int] = {t.meter_id: clock.steps for t in self.targets}
        self._dead = False
        self.heartbeat = time.monotonic()
        """Monotonic time of the last loop iteration of any meter task (watchdog)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every meter until ``stop`` is set (never raises for meter trouble)."""
        tasks = [asyncio.create_task(self._run_meter(t, stop), name=f"poll-{t.meter_id}")
                 for t in self.targets]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def alive(self) -> bool:
        """False if a meter task died (a bug): the watchdog then stops being fed."""
        return not self._dead

    async def _run_meter(self, t: PollTarget, stop: asyncio.Event) -> None:
        last_tick: float | None = None
        try:
            while not stop.is_set():
                st = self.stats[t.meter_id]
                now = self._wall()
                target = next_tick(now + st.backoff_s, t.interval_s)
                if last_tick is not None and now < last_tick < now + t.interval_s / 2:
                    # woke a hair before the tick it polled (timer granularity, a slewed
                    # wall clock): that tick is done, the next one is due
                    target = next_tick(last_tick + t.interval_s / 2 + st.backoff_s,
                                       t.interval_s)
                delay = min(max(0.0, target - now), 1.5 * t.interval_s + st.backoff_s)
                if await stopped_within(stop, delay):
                    return
                last_tick = target
                await self.poll_once(t)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._dead = True
            log.critical("poller task for meter %s died", t.meter_id, exc_info=True)
            raise

    async def poll_once(self, t: PollTarget) -> None:
        """Take the bus, read one meter once, account for the result."""
        st = self.stats[t.meter_id]
        lock = self._bus_locks.setdefault(t.bus, asyncio.Lock())
        asked = self._wall()
        async with lock:
            started = self._wall()
            missed = int((started - asked) // t.interval_s)
            if missed > 0:
                st.skipped_ticks += missed
            steps = self.clock.check()
            now_ms = int(started * 1000)
            try:
                readings = await asyncio.wait_for(t.meter.read(now_ms), t.timeout_s)
            except TimeoutError:
                self._failed(t, st, DeviceTimeout(
                    f"no answer within {t.timeout_s} s", bus=t.bus,
                    hint="check wiring, power, unit id and baud rate"), timeout=True)
                return
            except DeviceError as exc:
                self._failed(t, st, exc)
                return
            except Exception as exc:  # a driver bug must not stop polling: log and count
                log.exception("meter %s: driver raised an unexpected error", t.meter_id)
                self._failed(t, st, exc)
                return
        self.heartbeat = time.monotonic()
        good = self._checked(t, st, readings)
        flag_step = steps != self._seen_steps[t.meter_id]
        self._seen_steps[t.meter_id] = steps
        if flag_step:
            good = [dataclasses.replace(r, quality=r.quality | Quality.CLOCK_STEP)
                    for r in good]
        st.reads += 1
        st.readings += len(good)
        st.consecutive_failures = 0
        st.backoff_s = 0.0
        st.last_success_ms = now_ms
        st.last_values = {r.obis: f"{r.decimal} {r.unit}".rstrip() for r in good}
        if good:
            self.sink(good, now_ms)

    def _checked(self, t: PollTarget, st: MeterStats, readings: Sequence[Reading]
                 ) -> list[Reading]:
        """Readings that encode canonically; others are counted and logged, not sealed."""
        good = []
        for r in readings:
            try:
                if r.meter_id != t.meter_id:
                    raise ValueError(f"meter_id {r.meter_id!r} is not the configured "
                                     f"{t.meter_id!r}")
                encode_reading(r, _ZERO_SALT)
            except ValueError as exc:
                st.invalid_readings += 1
                log.error("meter %s: dropping invalid reading %s: %s", t.meter_id, r.obis, exc)
                continue
            good.append(r)
        return good

    def _failed(self, t: PollTarget, st: MeterStats, exc: BaseException, *,
                timeout: bool = False) -> None:
        self.heartbeat = time.monotonic()
        st.errors += 1
        st.timeouts += int(timeout)
        st.consecutive_failures += 1
        st.last_error = str(exc) or type(exc).__name__
        st.last_error_ms = int(self._wall() * 1000)
        # the first failure retries at the next tick; later ones back off from one interval
        st.backoff_s = backoff_delay(st.consecutive_failures - 1, t.interval_s,
                                     t.backoff_max_s, BACKOFF_JITTER, self._rng)
        n = st.consecutive_failures
        level = logging.WARNING if n <= 3 or n % 100 == 0 else logging.DEBUG
        log.log(level, "meter %s read failed (%d in a row, next try in >= %.1f s): %s",
                t.meter_id, st.consecutive_failures, st.backoff_s, st.last_error)
