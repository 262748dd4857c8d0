"""WATCHDOG=1 goes out only while the main loop is healthy: a storage stall that holds the
sealer past the health limit starves the watchdog (so systemd would restart the agent)
while meters keep being polled; the watchdog resumes when the stall ends."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path

import pytest

import keyfiles as keys
from agent.service import daemon
from agent.service.config import load_config
from agent.service.daemon import Agent
from drivers.sim.meter import MeterServer
from tests.support.agent import agent_config

STALL_S = 3.0
HEALTH_S = 1.0


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

    watchdogs: list[float] = []
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

    real = os.fdatasync
    stall = threading.Event()

    def fdatasync(fd: int) -> None:
        if stall.is_set():
            stall.clear()
            time.sleep(STALL_S)  # the SD card stalls once
        real(fd)

    monkeypatch.setattr("agent.storage.store.os.fdatasync", fdatasync)

    async def scenario() -> tuple[float, float, int, int]:
        agent = Agent(load_config(cfg_path))
        agent.open()
        task = asyncio.create_task(agent.run())
        while agent.store is None or agent.store.height < 1:  # past the first segment
            await asyncio.sleep(0.05)
        reads_before = agent.poller.stats["main"].reads
        stall.set()
        t_stall = time.monotonic()
        await asyncio.sleep(STALL_S + 1.5)
        reads_after = agent.poller.stats["main"].reads
        agent.stop_event.set()
        await task
        agent.close()
        return t_stall, time.monotonic(), reads_before, reads_after

    try:
        t_stall, t_end, reads_before, reads_after = asyncio.run(scenario())
    finally:
        done.set()
        listener.join()
        sock.close()

    assert any(t < t_stall for t in watchdogs), "no watchdog before the stall"
    # the sealer is stuck from t_stall to t_stall + STALL_S; after HEALTH_S it is unhealthy
    starved = [t for t in watchdogs if t_stall + HEALTH_S + 0.5 < t < t_stall + STALL_S - 0.2]
    assert starved == [], "watchdog fed while the main loop was stuck"
    assert any(t > t_stall + STALL_S for t in watchdogs), "watchdog did not resume"
    # meters kept being polled during the stall: the fsync waits off the event loop
    assert reads_after - reads_before >= int(STALL_S / 0.2) - 3
    assert t_end > t_stall + STALL_S
