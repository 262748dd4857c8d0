"""systemd units verify cleanly and meet the hardening threshold; every script passes shellcheck."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "systemd").glob("*.service"))
MAX_EXPOSURE = 1.5


def _unit_with_binaries(unit: Path, tmp_path: Path) -> Path:
    """A copy of the unit whose /opt/meterchain paths point at a real executable here.

    systemd-analyze verify fails when ExecStart's binary is missing; the installed
    layout is checked by the install test, this checks the unit's own syntax.
    """
    prefix = tmp_path / "opt/meterchain"
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    exe = prefix / "bin/meterchain"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/opt/meterchain", str(prefix)))
    return copy


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_verifies_without_any_warning(unit: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(_unit_with_binaries(unit, tmp_path))],
        capture_output=True, text=True,
    )
    # systemd-analyze exits 0 on misspelled keys and only warns on stderr.
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_verify_catches_a_misspelled_key(tmp_path: Path) -> None:
    """The check above can fail: a typo in a unit shows up on stderr."""
    bad = tmp_path / "bad.service"
    unit = _unit_with_binaries(UNITS[0], tmp_path)
    bad.write_text(unit.read_text().replace("ProtectHome=yes", "ProtectHom=yes"))
    proc = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True)
    assert "ProtectHom" in proc.stderr


def _exposure(unit: Path) -> float:
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)],
        capture_output=True, text=True,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return float(m.group(1))


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_hardening_meets_threshold(unit: Path) -> None:
    assert _exposure(unit) <= MAX_EXPOSURE


def test_exposure_check_can_fail(tmp_path: Path) -> None:
    plain = tmp_path / "plain.service"
    plain.write_text("[Service]\nExecStart=/bin/true\n")
    assert _exposure(plain) > MAX_EXPOSURE


def test_agent_unit_keeps_what_the_agent_needs() -> None:
    text = (REPO / "systemd/meterchain-agent.service").read_text()
    assert "Type=notify" in text and re.search(r"^WatchdogSec=\d+", text, re.M)
    assert "User=meterchain" in text and "Restart=on-failure" in text
    # USB adapters, USB CDC adapters, the Pi's UART, on-board ports, RS-485 HATs (SC16IS7xx)
    for dev in ("ttyUSB", "ttyACM", "ttyAMA", "ttyS", "ttySC"):
        assert f"DeviceAllow=char-{dev} rw" in text
    # a device flashed from an image makes its own key before the config is checked
    pre = re.findall(r"^ExecStartPre=(.*)$", text, re.M)
    assert pre[0].endswith("meterchain key init --config /etc/meterchain/agent.toml")
    assert pre[1].endswith("meterchain config check /etc/meterchain/agent.toml")
    assert re.search(r"^RestrictAddressFamilies=.*AF_INET6", text, re.M)
    assert "PrivateNetwork=yes" not in text


def _scripts() -> list[Path]:
    found = {REPO / ".ci/run"}
    for path in REPO.rglob("*"):
        if ".venv" in path.parts or ".git" in path.parts or not path.is_file():
            continue
        if path.suffix == ".sh":
            found.add(path)
        elif path.suffix == "" and path.stat().st_size < 1_000_000:
            with path.open("rb") as f:
                if re.match(rb"#!.*\b(ba)?sh\b", f.readline()):
                    found.add(path)
    return sorted(found)


def test_every_shell_script_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (tests/run.sh installs it)"
    scripts = _scripts()
    assert REPO / "deploy/install.sh" in scripts
    proc = subprocess.run([shellcheck, "-x", *map(str, scripts)], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
