"""WATCHDOG=1 goes out only while the main loop is healthy: a storage stall that holds the
sealer past the health limit starves the watchdog (so systemd would restart the agent)
while meters keep being polled; the watchdog resumes when the stall ends."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import keyfiles as keys
from agent.service import daemon
from agent.service.config import load_config
from agent.service.daemon import Agent
from agent.service.notify import Notifier
from drivers.sim.meter import MeterServer
from tests.support.agent import agent_config

STALL_S = 3.0
HEALTH_S = 1.0
LIMIT_S = 60.0
"""Waits fail only after this long: a hang, never a slow machine."""


def test_watchdog_withheld_while_the_sealer_is_stuck(
        tmp_path: Path, sim_meter: MeterServer, monkeypatch: pytest.MonkeyPatch) -> None:
    keys.generate_gateway_key(tmp_path)
    meters = f"""
[[meters]]
id = "main"
driver = "modbus-tcp"
host = "127.0.0.1"
tcp_port = {sim_meter.tcp_port}
unit = 1
profile = "eastron-sdm630"
poll_interval_s = 0.2
timeout_s = 0.15
"""
    cfg_path = tmp_path / "agent.toml"
    cfg_path.write_text(agent_config(tmp_path, meters).replace(
        "interval_s = 1.0\nmax_readings = 50", "interval_s = 0.3\nmax_readings = 50"))
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.1)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.setattr(daemon, "HEALTH_STALL_S", HEALTH_S)

    watchdogs: list[float] = []  # when each WATCHDOG=1 arrived on the socket
    sent: list[float] = []  # when the agent decided to send each (its health check)
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            try:
                msg = sock.recv(4096).decode()
            except TimeoutError:
                continue
            if msg == "WATCHDOG=1":
                watchdogs.append(time.monotonic())

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()

    real_watchdog = Notifier.watchdog

    def watchdog(self: Notifier) -> bool:
        sent.append(time.monotonic())
        return real_watchdog(self)

    monkeypatch.setattr(Notifier, "watchdog", watchdog)

    real = os.fdatasync
    stall = threading.Event()
    span: dict[str, float] = {}
    agents: list[Agent] = []

    def fdatasync(fd: int) -> None:
        """The SD card stalls once: for STALL_S, and (however slow this machine is) until
        the meter was read a few times meanwhile, which a blocked event loop never does."""
        if stall.is_set():
            stall.clear()
            stats = agents[0].poller.stats["main"]
            reads0, span["start"] = stats.reads, time.monotonic()
            limit = span["start"] + LIMIT_S
            while time.monotonic() < limit and (
                    time.monotonic() < span["start"] + STALL_S or stats.reads < reads0 + 5):
                time.sleep(0.02)
            span["reads"] = stats.reads - reads0
            span["end"] = time.monotonic()
        real(fd)

    monkeypatch.setattr("agent.storage.store.os.fdatasync", fdatasync)

    async def until(cond: Callable[[], bool]) -> None:
        deadline = time.monotonic() + LIMIT_S
        while not cond():
            assert time.monotonic() < deadline, "condition never held"
            await asyncio.sleep(0.05)

    async def scenario() -> None:
        agent = Agent(load_config(cfg_path))
        agents.append(agent)
        agent.open()
        task = asyncio.create_task(agent.run())
        await until(lambda: agent.store is not None and agent.store.height >= 1
                    and len(watchdogs) >= 1)  # past the first segment, watchdog fed
        stall.set()
        await until(lambda: "end" in span)
        await until(lambda: any(t > span["end"] for t in watchdogs))  # it resumed
        agent.stop_event.set()
        await task
        agent.close()

    try:
        asyncio.run(scenario())
    finally:
        done.set()
        listener.join()
        sock.close()

    start, end = span["start"], span["end"]
    assert any(t < start for t in sent), "no watchdog before the stall"
    # the sealer is stuck from start to end; HEALTH_S after its block was written (before
    # start) it is unhealthy: no health check may feed the watchdog from then on
    starved = [t for t in sent if start + HEALTH_S + 0.05 < t < end]
    assert starved == [], "watchdog fed while the main loop was stuck"
    assert end - start >= STALL_S  # the stall was long enough to starve it
    assert any(t > end for t in watchdogs), "watchdog did not resume"
    # meters kept being polled during the stall: the fsync waits off the event loop
    assert span["reads"] >= 5
