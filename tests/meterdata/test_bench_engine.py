"""bench/_intervals_engine.py at a tiny size keeps its output contract (not a timing test)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_engine_bench_smoke():
    out = subprocess.run(
        [sys.executable, "bench/_intervals_engine.py", "--points", "2", "--days", "11", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    d = json.loads(out.strip().splitlines()[-1])
    engine = d["rows"][0]
    # 11 days of 5-minute readings less a 40-minute and a 5-hour gap, per point
    assert engine["readings"] == 2 * (11 * 288 - 8 - 60)
    assert engine["intervals"] == 2 * 11 * 96
    assert 0 < engine["measured"] < engine["intervals"]
    assert d["summary"]["engine_readings_per_s"] > 0 and d["summary"]["sha256_200B_per_s"] > 0
    if importlib.util.find_spec("pandas") is None:
        assert d["rows"][1]["implementation"].endswith("pandas not installed")
    else:
        # an independent implementation finds the same intervals read at both ends
        assert d["summary"]["same_measured_count"] is True
        assert d["rows"][1]["intervals"] == engine["intervals"]
        # and the same energies, interval by interval, except where the engine follows
        # comparable days across the 5-hour gap and the reference draws a line
        assert d["summary"]["same_values"] is True
        assert d["summary"]["values_differing"] == 0
        assert d["summary"]["estimated_not_compared"] > 0
        compared = d["summary"]["values_compared"] + d["summary"]["estimated_not_compared"]
        assert compared == engine["intervals"]
