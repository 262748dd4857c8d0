"""Helpers for agent tests: an honest in-process meter, config files, a sim-meter thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from drivers.base import Meter, MeterSpec
from ledger import Reading
from ledger.errors import DeviceError


class ScriptedMeter(Meter):
    """A meter implementing the real :class:`drivers.base.Meter` interface in-process.

    Each read takes ``delay_s`` (an ``asyncio.sleep``, like waiting for a bus answer),
    then returns one energy reading, raises ``DeviceError`` while ``failing`` is set, or
    hangs while ``hang`` is set. Every read is logged as ``(start, end)`` times of the
    running loop's clock (monotonic, or virtual under :mod:`tests.support.virtualtime`).
    """

    def __init__(self, meter_id: str, *, bus: str | None = None, delay_s: float = 0.0) -> None:
        self.spec = MeterSpec(meter_id=meter_id, protocol="modbus-tcp", host=bus or meter_id)
        self.delay_s = delay_s
        self.failing = False
        self.hang = False
        self.value = 1000
        self.calls: list[tuple[float, float]] = []
        self.now_ms: list[int] = []
        self.closed = False

    async def probe(self) -> bool:
        return True

    async def read(self, now_ms: int) -> list[Reading]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.now_ms.append(now_ms)
        try:
            if self.hang:
                await asyncio.sleep(3600)
            await asyncio.sleep(self.delay_s)
            if self.failing:
                raise DeviceError("no answer", bus=self.spec.bus, unit=1, register=0)
            self.value += 1
            return [Reading.make(self.spec.meter_id, "1-0:1.8.0", self.value, 0, "Wh", now_ms)]
        finally:
            self.calls.append((start, loop.time()))

    async def close(self) -> None:
        self.closed = True


class LoopThread:
    """An asyncio loop in a daemon thread, for servers a subprocess under test talks to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, make: Callable[[], object], timeout: float = 10.0) -> object:
        fut = asyncio.run_coroutine_threadsafe(make(), self.loop)  # type: ignore[arg-type]
        return fut.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def agent_config(tmp: Path, meters: str, *, extra: str = "", sealing: str = "") -> str:
    """A config text with gateway paths under ``tmp`` and the given meter tables."""
    return f"""
[gateway]
name = "test gateway"
key_path = "{tmp}/gateway.key"
ledger_dir = "{tmp}/ledger"
state_path = "{tmp}/state.json"
stop_timeout_s = 4.0

{meters}

[sealing]
interval_s = 1.0
max_readings = 50
{sealing}

[metrics]
interval_s = 0.5

[logging]
level = "debug"
format = "journald"
{extra}
"""
