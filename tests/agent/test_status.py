"""`meterchain status`: 0 running and healthy, 1 degraded / critical / stopped / not
responding / gone, 2 usage error; --json carries the same verdict for scripts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.service.status import STATUS_VERSION, write_status
from meterchain.cli import main


def _snap(**over: Any) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    snap: dict[str, Any] = {
        "version": STATUS_VERSION, "written_ms": now_ms, "pid": 1, "started_ms": now_ms,
        "running": True, "interval_s": 15.0, "gateway": {"name": "gw", "key": "ab" * 32},
        "health": {"state": "ok", "problems": []},
        "meters": [{"meter_id": "m1", "driver": "modbus-tcp", "reads": 3, "errors": 0,
                    "last_success_ms": now_ms, "last_error": None,
                    "last_values": {"1-0:1.8.0": "1234 Wh", "1-0:32.7.0": "230.4 V"}}],
        "chain": {"height": 4, "head_hash": "cd" * 32, "first_height": 0},
        "sealer": {}, "replicas": [], "disk": {},
    }
    snap.update(over)
    return snap


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


CASES = {
    "healthy": ({}, 0, "health   OK"),
    "degraded": ({"health": {"state": "degraded", "problems": ["meter m1: 3 failed"]}}, 1,
                 "health   DEGRADED"),
    "critical": ({"health": {"state": "critical", "problems": ["store full"]}}, 1,
                 "health   CRITICAL"),
    "stopped": ({"running": False}, 1, "STOPPED (final status written"),
    "stale": ({"written_ms": int(time.time() * 1000) - 60_000, "interval_s": 1.0}, 1,
              "NOT RESPONDING"),
    "process gone": ("dead-pid", 1, "NOT RUNNING: process"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_exit_code_and_text(case: str, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    over, code, text = CASES[case]
    snap = _snap(pid=_dead_pid()) if over == "dead-pid" else _snap(**over)  # type: ignore[arg-type]
    path = tmp_path / "status.json"
    write_status(path, snap)
    assert main(["status", "--status-file", str(path)]) == code
    out = capsys.readouterr().out
    assert text in out, out
    assert main(["status", "--status-file", str(path), "--json"]) == code
    doc = json.loads(capsys.readouterr().out)
    assert doc["assessed"]["exit_code"] == code
    assert doc["chain"]["height"] == 4


def test_values_are_named_one_per_line(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "status.json"
    write_status(path, _snap(pid=__import__("os").getpid()))
    assert main(["status", "--status-file", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(ln.split() == ["1-0:1.8.0", "energy_import", "1234", "Wh"] for ln in lines)
    assert any(ln.split() == ["1-0:32.7.0", "voltage_l1", "230.4", "V"] for ln in lines)
    assert f"public key {'ab' * 32}" in lines[0]  # whole, for enrollment


def test_no_status_file_is_not_running_and_a_bad_config_is_usage(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--status-file", str(tmp_path / "none.json")]) == 1
    assert "the agent has not run with this config" in capsys.readouterr().err
    assert main(["status", "--config", str(tmp_path / "missing.toml")]) == 2


def test_key_show_and_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`key init` makes the key only when there is none; `key show` prints its public key."""
    import keyfiles

    cfg = tmp_path / "agent.toml"
    key = tmp_path / "state" / keyfiles.GATEWAY_KEY
    cfg.write_text(f'[gateway]\nkey_path = "{key}"\n')  # the rest may still need work
    assert main(["key", "show", "--config", str(cfg)]) == 2
    assert "key file not found" in capsys.readouterr().err
    assert main(["key", "init", "--config", str(cfg)]) == 0
    made = capsys.readouterr().out
    assert key.stat().st_mode & 0o777 == 0o600
    public = keyfiles.public_from_seed(keyfiles.load_signing_key(key)).hex()
    assert f"generated the gateway key {key} on this device" in made and public in made
    before = key.read_bytes()
    assert main(["key", "init", "--config", str(cfg)]) == 0
    assert f"present; public key {public}" in capsys.readouterr().out
    assert key.read_bytes() == before
    assert main(["key", "show", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == public
