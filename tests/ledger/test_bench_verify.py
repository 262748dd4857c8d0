"""bench/verify.py and bench/_common.py run and keep their output contract (not a timing test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_verify_bench_prints_table_and_json_last_line() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "verify.py"), "--readings", "700",
         "--compare-readings", "128", "--json"],
        check=True, capture_output=True, text=True, cwd=ROOT, timeout=120,
    ).stdout
    lines = out.strip().splitlines()
    assert lines[0].startswith("== offline chain verification")
    result = json.loads(lines[-1])
    assert result["summary"]["readings"] == 700
    assert result["rows"][0]["blocks"] == 11  # 10 full blocks of 64 and one of 60
    assert [r["path"] for r in result["rows"]][1:] == [
        "verify + decode every Reading", "clean-room verifier (spec only)",
        "Ed25519 signatures only"]
    assert all(r["readings_per_s"] > 0 for r in result["rows"])
    assert result["peak_rss_mb"] > 0


def test_common_report_without_json_prints_no_json(capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import _common
    finally:
        sys.path.remove(str(ROOT / "bench"))
    _common.report("t", [{"a": 1, "b": 2.5}, {"a": 3, "c": "x"}], {"s": 1}, False)
    text = capsys.readouterr().out
    assert text.splitlines()[1].split() == ["a", "b", "c"]
    assert "{" not in text and "peak_rss_mb" in text
