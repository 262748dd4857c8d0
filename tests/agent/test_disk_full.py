"""Disk full on a real small filesystem: the agent keeps polling, holds readings, resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import keyfiles as keys
from agent.storage.store import BlockStore, StoreOptions
from drivers import profile
from drivers.sim.meter import MeterServer, SimUnit
from drivers.sim.model import MeterModel
from ledger import block_readings, decode_blocks, verify_chain
from tests.support.agent import LoopThread

ROOT = Path(__file__).resolve().parents[2]


def wait_status(path: Path, pred: Any, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    snap: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            snap = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            snap = {}
        if snap and pred(snap):
            return snap
        time.sleep(0.1)
    raise AssertionError(f"status never matched; last: {json.dumps(snap)[:2000]}")


@pytest.mark.slow
def test_agent_survives_enospc_and_resumes(tmp_path: Path, small_fs: Path) -> None:
    loop = LoopThread()
    server = MeterServer([SimUnit(1, profile.load("eastron-sdm120"), MeterModel())])
    loop.call(server.start)
    keys.generate_gateway_key(tmp_path)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"""
[gateway]
key_path = "{tmp_path}/gateway.key"
ledger_dir = "{small_fs}/ledger"
state_path = "{tmp_path}/state.json"
[[meters]]
id = "m"
driver = "modbus-tcp"
host = "127.0.0.1"
tcp_port = {server.tcp_port}
unit = 1
profile = "eastron-sdm120"
poll_interval_s = 0.2
timeout_s = 0.15
[sealing]
interval_s = 0.3
max_readings = 50
retry_interval_s = 0.2
[retention]
disk_budget_bytes = 1048576
segment_bytes = 65536
check_interval_s = 0.5
[metrics]
interval_s = 0.2
""")
    filler = small_fs / "filler"
    proc = subprocess.Popen([sys.executable, "-m", "meterchain", "run", "--config", str(cfg)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status = tmp_path / "status.json"
    try:
        wait_status(status, lambda s: s["chain"]["height"] >= 1)
        st = os.statvfs(small_fs)
        with open(filler, "wb") as fh:  # leave a few KiB: one or two more blocks fit
            fh.write(bytes(max(0, st.f_bavail * st.f_frsize - 6 * 1024)))
        full = wait_status(status, lambda s: s["sealer"]["store_full"])
        assert full["health"]["state"] == "critical"
        assert any("store full" in p for p in full["health"]["problems"])
        reads_then = full["meters"][0]["reads"]
        held = wait_status(status, lambda s: s["meters"][0]["reads"] >= reads_then + 5)
        assert held["sealer"]["store_full"] and held["sealer"]["pending_readings"] > 0
        assert proc.poll() is None
        height_full = held["chain"]["height"]
        filler.unlink()
        resumed = wait_status(status, lambda s: not s["sealer"]["store_full"]
                              and s["chain"]["height"] > height_full)
        assert resumed["sealer"]["dropped_readings"] == 0
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        loop.call(server.stop)
        loop.close()
    assert proc.returncode == 0, err[-3000:]
    assert "cannot commit a block" in err and "no space left on device" in err.lower()
    final = json.loads(status.read_text())
    store = BlockStore.open(small_fs / "ledger", options=StoreOptions(read_only=True))
    blocks = list(decode_blocks(store.iter_records(0)))
    store.close()
    verify_chain(blocks)
    readings = [r for b in blocks for r, _ in block_readings(b)]
    assert len(readings) == final["sealer"]["readings_committed"]
    energy = [r.timestamp_ms for r in readings if r.obis == "1-0:1.8.0"]
    assert energy == sorted(energy) and len(set(energy)) == len(energy)
