"""Meter faults end to end: `meterchain run` with one healthy simulated meter and five
faulty ones (silent, exception code, bad CRC, garbage, answer from the wrong unit): the
agent keeps going, the healthy meter's readings reach the replica, nothing else does."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.storage.store import BlockStore
from drivers import profile
from drivers.sim.faults import FaultResponder
from drivers.sim.meter import SimUnit, live_image
from drivers.sim.model import MeterModel
from ledger import block_readings
from tests.support.pipeline import AgentProcess, SimMeters
from tests.support.replicaproc import ReplicaProcess

MODES = ("silent", "exception", "bad-crc", "garbage", "wrong-unit")
LIMIT_S = 90.0
"""Fail only after this long: far beyond the ~5 s the scenario takes on an idle machine."""


def _wait_for_status(path: Path, cond: Callable[[dict[str, Any]], bool]) -> None:
    """Wait until the running agent's status.json satisfies ``cond`` (however long the
    agent takes to start and poll on this machine, up to LIMIT_S)."""
    deadline = time.monotonic() + LIMIT_S
    snap: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        try:
            snap = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            snap = None
        if snap is not None and snap.get("running") and cond(snap):
            return
        time.sleep(0.1)
    raise AssertionError(f"status never showed the expected state: {snap}")


@pytest.mark.slow
def test_faulty_meters_do_not_stop_the_agent_or_the_others(tmp_path: Path) -> None:
    good = SimMeters([("eastron-sdm120", 1)])
    image = live_image(SimUnit(1, profile.load("eastron-sdm120"), MeterModel()))
    responders = [FaultResponder(image, unit=1, mode=m) for m in MODES]
    for r in responders:
        good.loop.call(r.__aenter__)
    tables = good.config_tables(poll_interval_s=0.2, timeout_s=0.15)
    for mode, r in zip(MODES, responders, strict=True):
        tables += f"""
[[meters]]
id = "bad-{mode}"
driver = "modbus-rtu-over-tcp"
host = "127.0.0.1"
tcp_port = {r.port}
unit = 1
profile = "eastron-sdm120"
poll_interval_s = 0.2
timeout_s = 0.15
backoff_max_s = 0.4
"""
    tables += "\n[metrics]\ninterval_s = 0.2\n"  # status.json, watched below
    gw = AgentProcess(tmp_path / "gw", tables, replicas=[])
    rep = ReplicaProcess(tmp_path / "rep", enroll=[gw.public_key]).start()
    gw = AgentProcess(tmp_path / "gw", tables, replicas=[rep.url])
    try:
        gw.start()
        _wait_for_status(tmp_path / "gw" / "status.json", lambda snap: (
            {m["meter_id"]: m["reads"] for m in snap["meters"]}["sim-1"] >= 10
            and all(m["errors"] > 0 for m in snap["meters"] if m["meter_id"] != "sim-1")
            and any(r["acked_height"] >= 0 for r in snap["replicas"])))
        assert gw.terminate() == 0, (tmp_path / "gw" / "agent.log").read_text()[-3000:]
        with BlockStore.open(gw.ledger) as store:
            readings = [r for h in range(store.height + 1)
                        for r, _ in block_readings(store.get(h))]
            local = [store.get_record(h) for h in range(store.height + 1)]
        replica_records = rep.records(gw.public_key)
    finally:
        if gw.proc is not None:
            gw.kill()
        rep.stop()
        for r in responders:
            good.loop.call(lambda r=r: r.__aexit__(None, None, None))
        good.close()
    meters = {r.meter_id for r in readings}
    assert meters == {"sim-1"}, meters
    times = sorted({r.timestamp_ms for r in readings})
    assert len(times) >= 10, f"healthy meter read only {len(times)} times"
    assert replica_records == local[: len(replica_records)] and len(replica_records) >= 1
    assert all(r.requests > 0 for r in responders), "a faulty meter was never polled"
    status = json.loads((tmp_path / "gw" / "status.json").read_text())  # final, at stop
    errs = {m["meter_id"]: m["errors"] for m in status["meters"]}
    assert all(errs[f"bad-{m}"] > 0 for m in MODES), errs
    assert errs["sim-1"] == 0, errs
