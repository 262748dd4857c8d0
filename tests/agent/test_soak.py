"""Soak: the installed layout on a small tmpfs, with everything going wrong in one run.

`meterchain run` keeps its ledger, state and status on one 4 MiB tmpfs (as
/var/lib/meterchain), polls two simulated meters and forwards to two real replicas, one
directly and one through a fault-injecting proxy. For about 90 seconds, at random instants
(fixed seed): the agent is SIGKILLed, a replica goes down and comes back, the proxy
refuses connections, and for a stretch in the middle the disk is full (filled with dd;
kills and outages go on meanwhile). A supervisor loop restarts the agent as the unit
would: after a kill at once (a power loss; systemd's counters start afresh), after any
exit of its own after ``RestartSec`` and counting it against ``StartLimitBurst`` within
``StartLimitIntervalSec`` (scaled down). Afterwards every committed block -- so every
committed reading -- is at both replicas exactly once, the chains are identical, no
block committed before a kill changed or went missing, and the agent never exited on
its own. Nothing asserts a speed.
"""

from __future__ import annotations

import collections
import json
import os
import random
import time
from pathlib import Path

import pytest

from agent.storage.store import BlockStore, StoreOptions
from ledger import Block
from tests.support.faultproxy import FaultProxy
from tests.support.pipeline import (
    AgentProcess,
    SimMeters,
    installed_layout_head,
    read_json,
    verified_readings,
)
from tests.support.replicaproc import ReplicaProcess
from tests.support.tmpfs import fill, small_tmpfs

SEED = int(os.environ.get("MC_SOAK_SEED", "20261201"))
CHAOS_S = 90.0
FULL_FROM_S, FULL_UNTIL_S = 25.0, 60.0
RESTART_SEC = 0.5  # the unit's RestartSec=10s, scaled
START_LIMIT_BURST = 5  # the unit's StartLimitBurst=5 ...
START_LIMIT_INTERVAL_S = 30.0  # ... within StartLimitIntervalSec=10min, scaled
FAULTS = {"drop": 0.04, "reset": 0.04, "drop_after": 0.05, "reset_after": 0.05,
          "truncate": 0.04, "delay": 0.04, "error_503": 0.04, "garbage": 0.03}


class Supervisor:
    """Restarts the agent like the unit's Restart=on-failure, and keeps the score."""

    def __init__(self, gw: AgentProcess, var: Path) -> None:
        self.gw = gw
        self.var = var
        self.kills = 0
        self.own_exits: list[int] = []
        self.failure_starts: collections.deque[float] = collections.deque()
        self.exhausted = False
        self.starts_while_full = 0
        self.kept: list[tuple[int, bytes]] = []
        """(height, hash) of the head found after each kill: must survive to the end."""

    def tend(self, disk_full: bool) -> None:
        """Restart the agent if it is not running (call often)."""
        proc = self.gw.proc
        if proc is not None and proc.poll() is None:
            return
        if proc is not None:  # it exited on its own: the unit restarts it after a pause
            self.own_exits.append(int(proc.returncode))
            self.gw.proc = None
            time.sleep(RESTART_SEC)
            now = time.monotonic()
            self.failure_starts.append(now)
            while self.failure_starts and self.failure_starts[0] < now - START_LIMIT_INTERVAL_S:
                self.failure_starts.popleft()
            if len(self.failure_starts) > START_LIMIT_BURST:
                self.exhausted = True
        self.starts_while_full += disk_full
        self.gw.start()

    def kill(self) -> None:
        """SIGKILL (a power loss), then note the committed head the store recovers."""
        if self.gw.proc is not None and self.gw.proc.poll() is not None:
            return  # it exited on its own: tend() counts that
        self.gw.kill()
        self.kills += 1
        with BlockStore.open(self.var / "ledger", options=StoreOptions(read_only=True)) as store:
            if store.head is not None:
                self.kept.append((store.height, store.head.hash))


@pytest.mark.slow
def test_soak_kills_outages_faults_and_a_full_disk(tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    rng = random.Random(SEED)
    meters = SimMeters([("eastron-sdm120", 1), ("eastron-sdm120", 2)])
    meters_open = [True]

    def close_meters() -> None:
        if meters_open:
            meters_open.clear()
            meters.close()

    request.addfinalizer(close_meters)
    gw = AgentProcess(tmp_path / "gw", "", replicas=[])
    rep_a = ReplicaProcess(tmp_path / "rep-a", enroll=[gw.public_key])
    request.addfinalizer(rep_a.stop)
    rep_b = ReplicaProcess(tmp_path / "rep-b", enroll=[gw.public_key])
    request.addfinalizer(rep_b.stop)
    rep_a.start()
    rep_b.start()
    proxy = FaultProxy(("127.0.0.1", rep_b.port), seed=SEED, rates=FAULTS).start()
    request.addfinalizer(proxy.stop)
    textfile = tmp_path / "prom" / "meterchain.prom"
    textfile.parent.mkdir()
    with small_tmpfs(tmp_path / "var", 4 << 20) as var:
        gw.config.write_text(installed_layout_head(gw, var, meters) + f"""[[replicas]]
name = "direct"
url = "{rep_a.url}"
timeout_s = 2.0
backoff_max_s = 0.5
[[replicas]]
name = "proxied"
url = "{proxy.url}"
timeout_s = 2.0
backoff_max_s = 0.5
[retention]
disk_budget_bytes = {2 << 20}
min_age_s = 0.0
segment_bytes = 65536
check_interval_s = 0.5
reserve_bytes = {256 << 10}
[metrics]
textfile = "{textfile}"
interval_s = 0.5
[logging]
level = "info"
""")
        status = var / "status.json"
        fillers: list[Path] = []
        sup = Supervisor(gw, var)
        events: collections.Counter[str] = collections.Counter()
        try:
            t0 = time.monotonic()
            sup.tend(False)
            next_event = t0 + rng.uniform(1.0, 4.0)
            next_fill = t0 + FULL_FROM_S
            killed_while_full = False
            while (now := time.monotonic()) - t0 < CHAOS_S:
                elapsed = now - t0
                full = bool(fillers)
                if now >= next_fill and elapsed < FULL_UNTIL_S:
                    # fill again every few seconds: pruning keeps freeing space meanwhile
                    fillers.append(var / f"FILLER{len(fillers)}")
                    fill(fillers[-1])
                    next_fill = now + 5.0
                elif full and elapsed >= FULL_UNTIL_S:
                    for f in fillers:
                        f.unlink()
                    fillers.clear()
                if full and not killed_while_full and elapsed >= FULL_FROM_S + 8:
                    sup.kill()  # at least one start on the full disk
                    killed_while_full = True
                if now >= next_event:
                    x = rng.random()
                    if x < 0.35:
                        sup.kill()
                    elif x < 0.6:
                        if rep_a.proc is None:
                            rep_a.start()
                        else:
                            rep_a.stop()
                        events["replica-a"] += 1
                    elif x < 0.75:
                        if rep_b.proc is None:
                            rep_b.start()
                        else:
                            rep_b.stop()
                        events["replica-b"] += 1
                    elif x < 0.9:
                        proxy.down = not proxy.down
                        events["proxy-down"] += 1
                    next_event = time.monotonic() + rng.uniform(1.0, 4.0)
                sup.tend(bool(fillers))
                time.sleep(0.05)

            # Calm: disk free, replicas up, no faults, meters stopped (no new readings);
            # the agent commits and forwards everything, then stops cleanly.
            for f in fillers:
                f.unlink()
            for rep in (rep_a, rep_b):
                if rep.proc is None:
                    rep.start()
            proxy.down = False
            proxy.rates = {}
            close_meters()
            deadline = time.monotonic() + 60
            while True:
                sup.tend(False)
                snap = read_json(status)
                if (snap.get("running") and snap["sealer"]["pending_readings"] == 0
                        and snap["disk"]["reserve_held"]
                        and all(r["acked_height"] == snap["chain"]["height"]
                                for r in snap["replicas"])):
                    break
                assert time.monotonic() < deadline, (
                    f"no catch-up: {json.dumps(snap)[:3000]}\n{gw.log.read_text()[-3000:]}")
                time.sleep(0.2)
            assert gw.terminate() == 0, gw.log.read_text()[-4000:]
            final = read_json(status)
            with BlockStore.open(var / "ledger", options=StoreOptions(read_only=True)) as st:
                first, height = st.first_height, st.height
                local = [st.get_record(h) for h in range(first, height + 1)]
        finally:
            if gw.proc is not None:
                gw.kill()
    records_a = rep_a.records(gw.public_key)
    records_b = rep_b.records(gw.public_key)
    rep_a.stop()
    rep_b.stop()
    log = gw.log.read_text()

    # the run did what it says: kills, outages, faults and a full disk, a start on it
    assert sup.kills >= 5, sup.kills
    assert events["replica-a"] + events["replica-b"] + events["proxy-down"] >= 3, events
    assert sum(n for f, n in proxy.counts.items() if f != "pass") > 0, proxy.counts
    assert sup.starts_while_full >= 1
    assert "released the disk reserve" in log
    # no exit but the kills, and the unit's restart policy never ran out
    assert sup.own_exits == [], log[-4000:]
    assert not sup.exhausted
    assert final["sealer"]["dropped_readings"] == 0

    # every committed block at both replicas exactly once: identical, complete chains
    assert records_a == records_b
    assert len(records_a) == height + 1
    assert records_a[first:] == local
    readings = verified_readings(records_a, gw.public_key)
    keys = [(r.meter_id, r.obis, r.timestamp_ms) for r in readings]
    assert len(set(keys)) == len(keys), "a reading is in the chain twice"
    assert {r.meter_id for r in readings} == {"sim-1", "sim-2"}
    # nothing committed before a kill was lost or changed
    for h, hsh in sup.kept:
        assert Block.decode(records_a[h]).hash == hsh, f"block {h} changed after a kill"
