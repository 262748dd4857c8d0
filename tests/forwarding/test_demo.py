"""`meterchain demo`: the whole pipeline on one machine, stopping by itself or on Ctrl-C,
leaving nothing running; `--ledger DIR` keeps the ledger. It ends with an energy
community settled over a simulated past day on the demo's replica and verified against
the replica's copy."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent.storage.store import BlockStore
from ledger import Block, ChainVerifier, block_readings
from meterchain.cli import main

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


def _kwh(wh: int) -> str:
    return f"{wh // 1000}.{wh % 1000:03d}"


def _check_community(output: str, d: Path) -> tuple[str, Path]:
    """The community's statements add up, are what the demo printed, and the printed
    verification reproduced the signed root; return (day, settlement.json)."""
    m = re.search(r"settled over (\d{4}-\d{2}-\d{2}) ", output)
    assert m, output
    day = m[1]
    m = re.search(r"--out (settled/\S+)\n", output)
    assert m, output
    settled = d / "demo" / "community" / m[1]
    signed = json.loads((settled / "settlement.json").read_text())
    doc = signed["document"]
    assert doc["period"]["label"] == day and doc["community"]["name"] == "sonnenhof"
    assert len(doc["sources"]) == 2  # both simulated gateways, with their heights and heads
    st = {m: json.loads((settled / "members" / f"{m}.json").read_text())
          for m in ("anna", "ben", "clara", "dora")}
    ch = {m: s["channels_wh"] for m, s in st.items()}
    for m, c in ch.items():
        assert 0 <= c["G.03_covered"] <= min(c["G.01_use"], c["G.02_allocated"]), m
        assert c["grid_import"] == c["G.01_use"] - c["G.03_covered"], m
        assert c["G.01_use"] > 0, m
        # what the demo printed is the statement
        assert re.search(rf"\n    {m}\s+{_kwh(c['G.01_use'])}\s+{_kwh(c['G.03_covered'])}\s+"
                         rf"{_kwh(c['grid_import'])}\s", output), m
    # nothing created or lost: shared energy is generation less surplus, and the
    # document's totals are the members' sums
    covered = sum(c["G.03_covered"] for c in ch.values())
    assert covered == sum(c["G.01_generation"] - c["P.01_surplus"] for c in ch.values()) > 0
    assert doc["totals"]["covered"] == covered
    assert doc["totals"]["use"] == sum(c["G.01_use"] for c in ch.values())
    assert ch["clara"]["G.01_generation"] > 0
    assert all(ch[m]["G.01_generation"] == 0 for m in ("anna", "ben", "dora"))
    money = {m: s["money_minor"] for m, s in st.items()}
    assert sum(v["paid_to_community"] - v["of_which_grid_fees"] for v in money.values()) == \
        sum(v["received_from_community"] for v in money.values()) > 0
    # a surplus at noon: clara's roof makes more than the households use, no battery
    noon = re.search(r"at noon \(12:00-13:00\) clara's roof made (\d+\.\d+) kWh while the "
                     r"households used (\d+\.\d+) kWh: (\d+\.\d+) kWh shared, (\d+\.\d+) kWh "
                     r"surplus", output)
    assert noon, output
    made, used, shared, surplus = (int(x.replace(".", "")) for x in noon.groups())
    assert made > used == shared and surplus == made - shared > 0
    # the printed verification recomputed the signed root from the replica's copy
    assert re.search(rf"OK sonnenhof {day} revision 0: recomputed root {doc['root']} ",
                     output), output
    return day, settled / "settlement.json"


@pytest.mark.slow
def test_demo_runs_the_pipeline_and_stops_by_itself(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    d = tmp_path / "kept"
    proc = _demo("--seconds", "4", "--ledger", str(d))
    output, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, output
    assert "verified the replica's copy" in output
    assert "identical to the agent's chain" in output
    # every simulated meter (Modbus TCP, RTU over a pty, SunSpec, P1) reached the chain
    assert _check_ledger(d, 1) == {"house-main", "heat-pump", "rooftop-pv", "grid-p1"}
    assert _leftovers(str(d)) == []
    day, document = _check_community(output, d)
    # Anyone with the replica's storage recomputes the same settlement after the demo.
    community = d / "demo" / "community"
    assert main(["settle", "verify", str(document), "--community",
                 str(community / "community.toml"), "--config",
                 str(community / "replica.toml")]) == 0
    assert "OK sonnenhof" in capsys.readouterr().out
    # A second run continues the same chain in the kept directory.
    proc = _demo("--seconds", "2", "--ledger", str(d))
    output2, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, output2
    _check_ledger(d, 3)
    # the community's gateways continue their chains; the day is settled again beside
    _, document2 = _check_community(output2, d)
    assert document2 != document


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
    assert "energy community" not in output  # interrupted: the community is skipped
    assert "the community's settlement is skipped" in output
    assert _leftovers(str(d)) == []
