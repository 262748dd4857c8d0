"""`meterchain demo`: the whole pipeline on one machine, stopping by itself or on Ctrl-C,
leaving nothing running; `--ledger DIR` keeps the ledger."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent.storage.store import BlockStore
from ledger import Block, ChainVerifier, block_readings

ROOT = Path(__file__).resolve().parents[2]


def _leftovers(marker: str) -> list[str]:
    """Command lines of live processes mentioning ``marker`` (servers, ...)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = (Path("/proc") / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmd:
            found.append(cmd)
    return found


def _demo(*args: str) -> subprocess.Popen[str]:
    # PATH names only an empty directory: the demo needs no system tool (no socat).
    bare = Path(tempfile.mkdtemp(prefix="mc-bare-path-"))
    return subprocess.Popen([sys.executable, "-m", "meterchain", "demo", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT), PATH=str(bare)))


def _check_ledger(d: Path, min_height: int) -> set[str]:
    """Verify the kept ledger; return the ids of the meters whose readings it holds."""
    meters: set[str] = set()
    with BlockStore.open(d) as store:  # the ledger is DIR itself
        assert store.height >= min_height
        v = ChainVerifier()
        for rec in store.iter_records(0, store.height + 1):
            block = Block.decode(rec)
            v.add(block)
            meters.update(r.meter_id for r, _salt in block_readings(block))
    return meters


@pytest.mark.slow
def test_demo_runs_the_pipeline_and_stops_by_itself(tmp_path: Path) -> None:
    d = tmp_path / "kept"
    proc = _demo("--seconds", "4", "--ledger", str(d))
    output, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, output
    assert "verified the replica's copy" in output
    assert "identical to the agent's chain" in output
    # every simulated meter (Modbus TCP, RTU over a pty, SunSpec, P1) reached the chain
    assert _check_ledger(d, 1) == {"house-main", "heat-pump", "rooftop-pv", "grid-p1"}
    assert _leftovers(str(d)) == []
    # A second run continues the same chain in the kept directory.
    proc = _demo("--seconds", "2", "--ledger", str(d))
    output2, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, output2
    _check_ledger(d, 3)


@pytest.mark.slow
def test_demo_stops_on_ctrl_c_and_leaves_nothing_running(tmp_path: Path) -> None:
    d = tmp_path / "int"
    proc = _demo("--seconds", "600", "--ledger", str(d))
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "sealed height 0" in line or "sealed height 1" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    output = "".join(lines) + rest
    assert proc.returncode in (0, 130), output
    assert "verified the replica's copy" in output
    assert _leftovers(str(d)) == []
