"""A full disk in the installed layout: ledger and state on ONE small filesystem.

The reported crash loop: a replica comes back while the disk is full, the forwarder's
cursor write fails and the agent exited 1 (and again on every restart). Here the agent
must keep running, report "store full" truthfully (status.json, `meterchain status`,
the metrics textfile on another filesystem), prune what its replica acknowledged, and
lose no reading it polled once space returns.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.storage.store import BlockStore, StoreOptions
from tests.support.pipeline import (
    ROOT,
    AgentProcess,
    SimMeters,
    installed_layout_head,
    read_json,
    verified_readings,
)
from tests.support.replicaproc import ReplicaProcess
from tests.support.tmpfs import fill, small_tmpfs

FS_BYTES = 4 << 20
RESERVE_BYTES = 256 << 10


def wait_for(what: str, pred: Callable[[], Any], proc: subprocess.Popen[bytes],
             log: Path, timeout: float = 30.0) -> Any:
    """Poll ``pred`` until truthy; fail at once if the agent exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        assert code is None, f"agent exited {code} while waiting for {what}:\n" + (
            log.read_text()[-4000:])
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; agent log:\n{log.read_text()[-4000:]}")


def layout_config(gw: AgentProcess, var: Path, rep_url: str, meters: SimMeters,
                  textfile: Path) -> None:
    """The installed layout: ledger and state (so status.json) in one directory."""
    gw.config.write_text(installed_layout_head(gw, var, meters) + f"""[[replicas]]
name = "r0"
url = "{rep_url}"
timeout_s = 2.0
backoff_max_s = 0.5
[retention]
disk_budget_bytes = {64 << 20}
min_age_s = 0.0
segment_bytes = 65536
check_interval_s = 0.5
reserve_bytes = {RESERVE_BYTES}
[metrics]
textfile = "{textfile}"
interval_s = 0.2
[logging]
level = "info"
""")


def status_cli(config: Path) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "meterchain", "status", "--config",
                           str(config)], cwd=ROOT, capture_output=True, text=True, timeout=30)
    return proc.returncode, proc.stdout + proc.stderr


def metric(text: str, name: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return line.split()[1]
    return None


@pytest.mark.slow
def test_replica_acknowledging_while_the_disk_is_full(tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    meters = SimMeters([("eastron-sdm120", 1)])
    request.addfinalizer(meters.close)
    gw = AgentProcess(tmp_path / "gw", "", replicas=[])
    rep = ReplicaProcess(tmp_path / "rep", enroll=[gw.public_key])
    request.addfinalizer(rep.stop)
    rep.start()
    textfile = tmp_path / "textfile" / "meterchain.prom"
    textfile.parent.mkdir()
    with small_tmpfs(tmp_path / "var", FS_BYTES) as var:
        layout_config(gw, var, rep.url, meters, textfile)
        status = var / "status.json"
        filler = var / "FILLER"
        gw.start()
        assert gw.proc is not None
        proc = gw.proc
        try:
            # Forwarding works; then the replica goes away (before a whole segment of 16
            # blocks is acknowledged, so nothing can be pruned) while blocks pile up.
            wait_for("blocks acknowledged", lambda: read_json(status).get("replicas", [{}])[0]
                     .get("acked_height", -1) >= 0, proc, gw.log)
            rep.stop()
            acked_before = read_json(status)["replicas"][0]["acked_height"]
            wait_for("three segments", lambda: read_json(status)["chain"]["height"] >= 40,
                     proc, gw.log)
            fill(filler)
            full = wait_for("store full", lambda: (s := read_json(status)).get(
                "sealer", {}).get("store_full") and s, proc, gw.log)
            height_full = full["chain"]["height"]
            assert full["health"]["state"] == "critical"
            assert any("store full" in p for p in full["health"]["problems"]), full
            # status.json keeps being rewritten (the reserve), and says so
            later = wait_for("a newer status", lambda: (s := read_json(status)).get(
                "written_ms", 0) > full["written_ms"] + 500 and s, proc, gw.log)
            assert later["sealer"]["store_full"]
            code, out = status_cli(gw.config)
            assert code == 1 and "store full" in out and "NOT RESPONDING" not in out, out
            assert metric(textfile.read_text(), "meterchain_store_full") == "1"

            # The replica comes back while the disk is full: it acknowledges everything,
            # and the agent (which crashed here) keeps running and prunes.
            rep.start()
            acked = wait_for("the backlog acknowledged while full", lambda: (
                s := read_json(status)).get("replicas", [{}])[0].get("acked_height", -1)
                >= height_full and s, proc, gw.log)
            pruned = wait_for("segments acknowledged while full pruned", lambda: (
                s := read_json(status))["chain"]["first_height"] > acked_before and s,
                proc, gw.log)
            assert filler.exists()
            assert acked["replicas"][0]["acked_height"] >= height_full
            assert pruned["disk"]["pruned_bytes"] > 0

            # Space returns: the backlog is committed and forwarded, nothing dropped.
            filler.unlink()
            wait_for("store writable and the reserve held again", lambda: not (
                s := read_json(status)).get("sealer", {}).get("store_full", True)
                and s["disk"]["reserve_held"], proc, gw.log)
            wait_for("the replica caught up", lambda: (s := read_json(status))[
                "replicas"][0]["acked_height"] >= s["chain"]["height"] > height_full,
                proc, gw.log)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, gw.log.read_text()[-4000:]
            gw.proc = None
        finally:
            if gw.proc is not None:
                gw.kill()
        final = read_json(status)
        assert metric(textfile.read_text(), "meterchain_store_full") == "0"
        with BlockStore.open(var / "ledger", options=StoreOptions(read_only=True)) as store:
            first, local = store.first_height, store.height
            local_records = [store.get_record(h) for h in range(first, local + 1)]
    records = rep.records(gw.public_key)
    log = gw.log.read_text()
    assert "released the disk reserve" in log and "allocated again" in log, log[-4000:]
    assert "because the disk is full" in log, log[-4000:]

    # Nothing polled was lost: every reading taken was committed, and is at the replica.
    assert final["running"] is False
    assert final["sealer"]["dropped_readings"] == 0
    assert final["sealer"]["pending_readings"] == 0
    taken = final["meters"][0]["readings"]
    assert final["sealer"]["readings_committed"] == taken
    assert first > 0, "nothing was pruned"
    # the replica holds every pruned block and agrees with the rest (the blocks the
    # stop committed go out at the next start)
    assert first < len(records) <= local + 1
    assert records[first:] == local_records[: len(records) - first]
    chain = records[:first] + local_records
    readings = verified_readings(chain, gw.public_key)
    assert len(readings) == taken
    keys = [(r.meter_id, r.obis, r.timestamp_ms) for r in readings]
    assert len(set(keys)) == len(keys), "a reading was committed twice"


def get_metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


@pytest.mark.slow
def test_stop_on_a_full_disk_commits_pending_readings_into_the_reserve(tmp_path: Path) -> None:
    """No replica, nothing prunable: the disk stays full. /metrics and `meterchain
    status` say so; SIGTERM commits every pending reading into the released reserve."""
    meters = SimMeters([("eastron-sdm120", 1)])
    gw = AgentProcess(tmp_path / "gw", "", replicas=[])
    with small_tmpfs(tmp_path / "var", FS_BYTES) as var:
        gw.config.write_text(installed_layout_head(gw, var, meters) + f"""[retention]
segment_bytes = 65536
check_interval_s = 0.5
reserve_bytes = {RESERVE_BYTES}
[metrics]
listen = "127.0.0.1:0"
interval_s = 0.2
""")
        status = var / "status.json"
        gw.start()
        assert gw.proc is not None
        proc = gw.proc
        try:
            first = wait_for("blocks", lambda: (s := read_json(status)).get("chain", {}).get(
                "height", -1) >= 3 and s, proc, gw.log)
            url = first["metrics_url"]
            assert metric(get_metrics(url), "meterchain_disk_reserve_bytes") == str(
                RESERVE_BYTES)
            fill(var / "FILLER")
            full = wait_for("readings held in memory", lambda: (s := read_json(status)).get(
                "sealer", {}).get("store_full") and s["sealer"]["pending_readings"] >= 100
                and s, proc, gw.log)
            text = get_metrics(url)
            assert metric(text, "meterchain_store_full") == "1"
            assert metric(text, "meterchain_disk_reserve_bytes") == "0"
            assert metric(text, "meterchain_critical") == "1"
            assert int(metric(text, "meterchain_pending_readings") or 0) >= 100
            code, out = status_cli(gw.config)
            assert code == 1 and "store full" in out and "DISK FULL" in out, out
            assert full["disk"]["reserve_held"] is False
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, gw.log.read_text()[-4000:]
            gw.proc = None
        finally:
            if gw.proc is not None:
                gw.kill()
            meters.close()
        final = read_json(status)
        with BlockStore.open(var / "ledger", options=StoreOptions(read_only=True)) as store:
            assert store.first_height == 0
            blocks = [store.get(h) for h in range(store.height + 1)]
    log = gw.log.read_text()
    assert "lost" not in log, log[-4000:]
    assert final["running"] is False
    assert final["sealer"]["pending_readings"] == 0
    assert final["sealer"]["dropped_readings"] == 0
    taken = final["meters"][0]["readings"]
    assert final["sealer"]["readings_committed"] == taken
    assert sum(b.header.reading_count for b in blocks) == taken


@pytest.mark.slow
def test_metrics_textfile_keeps_updating_when_status_json_cannot_be_written(
        tmp_path: Path) -> None:
    """Without a reserve (reserve_bytes = 0) status.json cannot be written on the full
    disk; the textfile, on another filesystem, is written on its own and tells the truth."""
    meters = SimMeters([("eastron-sdm120", 1)])
    gw = AgentProcess(tmp_path / "gw", "", replicas=[])
    textfile = tmp_path / "textfile" / "meterchain.prom"
    textfile.parent.mkdir()
    with small_tmpfs(tmp_path / "var", FS_BYTES) as var:
        head = installed_layout_head(gw, var, meters, stop_timeout_s=None, max_readings=None)
        gw.config.write_text(head + f"""[retention]
segment_bytes = 65536
reserve_bytes = 0
[metrics]
textfile = "{textfile}"
interval_s = 0.2
""")
        status = var / "status.json"
        gw.start()
        assert gw.proc is not None
        proc = gw.proc
        try:
            wait_for("blocks", lambda: read_json(status).get("chain", {}).get("height", -1)
                     >= 2, proc, gw.log)
            fill(var / "FILLER")
            wait_for("store full in the textfile", lambda: metric(
                textfile.read_text(), "meterchain_store_full") == "1", proc, gw.log)
            pending = [int(metric(textfile.read_text(), "meterchain_pending_readings") or 0)]
            wait_for("the textfile still updating", lambda: pending.append(int(metric(
                textfile.read_text(), "meterchain_pending_readings") or 0)) or
                pending[-1] > pending[0] + 20, proc, gw.log)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, gw.log.read_text()[-4000:]
            gw.proc = None
        finally:
            if gw.proc is not None:
                gw.kill()
            meters.close()
    log = gw.log.read_text()
    assert "cannot write the status" in log and "No space left on device" in log
