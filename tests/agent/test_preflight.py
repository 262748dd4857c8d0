"""`config check` refuses what `run` refuses at start, with the same message.

A table of bad configs, each run through both commands: both exit 2 and list the same
problems under the same key paths. (`run` is a real process, refused before it polls.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import keyfiles
from meterchain.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _toml(tmp: Path, *, meter: str = 'unit = 1\nprofile = "eastron-sdm630"',
          sealing: str = "", metrics: str = "", key: Path | None = None) -> Path:
    if key is None:
        key = tmp / "keys" / keyfiles.GATEWAY_KEY
        if not key.exists():
            keyfiles.generate_gateway_key(key.parent)
    text = f"""
[gateway]
key_path = "{key}"
ledger_dir = "{tmp / 'ledger'}"
state_path = "{tmp / 'state.json'}"

[[meters]]
id = "m1"
driver = "modbus-tcp"
host = "127.0.0.1"
tcp_port = 1
{meter}

[sealing]
{sealing}

[metrics]
{metrics}
"""
    path = tmp / "agent.toml"
    path.write_text(text)
    return path


def _bad_key_mode(tmp: Path) -> dict[str, object]:
    keyfiles.generate_gateway_key(tmp / "keys")
    os.chmod(tmp / "keys" / keyfiles.GATEWAY_KEY, 0o644)
    return {}


def _garbage_utility_key(tmp: Path) -> dict[str, object]:
    (tmp / "utility.pub").write_text("not a key\n")
    return {"sealing": f'seal_to_utility = true\nutility_key = "{tmp / "utility.pub"}"'}


CASES: dict[str, tuple[object, list[str]]] = {
    # name: (kwargs for _toml or a function of tmp giving them, the key paths refused)
    "missing key file": (lambda tmp: {"key": tmp / "nokeys" / "gateway.key"},
                         ["gateway.key_path"]),
    "key readable by others": (_bad_key_mode, ["gateway.key_path"]),
    "utility key while not sealing": (
        {"sealing": f'seal_to_utility = false\nutility_key = "{"ab" * 32}"'},
        ["sealing.utility_key"]),
    "utility key file not a key": (_garbage_utility_key, ["sealing.utility_key"]),
    "textfile in a missing directory": (lambda tmp: {
        "metrics": f'textfile = "{tmp / "no-such-dir" / "m.prom"}"'}, ["metrics.textfile"]),
    "textfile where nothing can be written": (
        {"metrics": 'textfile = "/proc/meterchain.prom"'}, ["metrics.textfile"]),
    "unit 0 and an unknown profile": (
        {"meter": 'unit = 0\nprofile = "no-such-profile"'},
        ["meters[0].unit", "meters[0].profile"]),
    "unknown driver option": (
        {"meter": 'unit = 1\nprofile = "eastron-sdm630"\noptions = { gapp_ms = 5 }'},
        ["meters[0].options.gapp_ms"]),
}


def _problems(stderr: str, command: str) -> list[str]:
    lines = stderr.strip().splitlines()
    assert lines and lines[0].startswith(f"meterchain {command}: error: "), stderr
    assert "Traceback" not in stderr
    return lines[1:]


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_check_refuses_what_run_refuses(case: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    spec, paths = CASES[case]
    kwargs = spec(tmp_path) if callable(spec) else spec
    cfg = _toml(tmp_path, **kwargs)  # type: ignore[arg-type]

    assert main(["config", "check", str(cfg)]) == 2
    checked = _problems(capsys.readouterr().err, "config")
    assert [line.split(": ", 1)[0] for line in checked] == paths

    run = subprocess.run([sys.executable, "-m", "meterchain", "run", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 2
    assert _problems(run.stderr, "run") == checked


def test_a_good_config_passes_both_checks(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "prom").mkdir()
    cfg = _toml(tmp_path, metrics=f'textfile = "{tmp_path / "prom" / "m.prom"}"')
    assert main(["config", "check", str(cfg)]) == 0
    assert "OK (1 meter(s), 0 replica(s))" in capsys.readouterr().out
    assert list((tmp_path / "prom").iterdir()) == []  # the write probe leaves nothing
