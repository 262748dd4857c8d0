"""`meterchain sim` serves the demo's meters until Ctrl-C; a technician practises on it.

The simulator runs as a real process; the commands its banner suggests are run as
printed (read, scan, key init, config check), then Ctrl-C stops it cleanly.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from meterchain.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _start(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "meterchain", "sim", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("serving "):
            return proc, lines
    proc.kill()
    raise AssertionError("sim did not start:\n" + "\n".join(lines) + proc.stderr.read())


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return out


def _suggested(lines: list[str]) -> list[list[str]]:
    return [shlex.split(line.strip())[1:] for line in lines
            if line.startswith("  meterchain ")]


def test_practise_read_scan_and_config_check_on_the_simulator(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "sim.toml"
    proc, banner = _start("--write-config", str(cfg))
    try:
        text = "\n".join(banner)
        for kind in ("Modbus TCP", "Modbus RTU", "SunSpec", "DSMR P1", "IEC 62056-21"):
            assert kind in text
        commands = _suggested(banner)
        reads = [c for c in commands if c[0] == "read" and "--config" not in c]
        assert {c[1] for c in reads} == {"--host", "--port", "--p1", "--d0"}
        for command in reads:
            assert main(command) == 0, command
            out = capsys.readouterr().out
            assert "energy_import" in out, (command, out)
        rtu_scan = next(c for c in commands if c[0] == "scan" and "--port" in c)
        assert main(rtu_scan) == 0
        assert "eastron-sdm120" in capsys.readouterr().out
        # a SunSpec device is recognised by its 'SunS' marker, not "none match"
        sunspec_scan = next(c for c in commands if c[0] == "scan" and "--host" in c)
        assert main(sunspec_scan) == 0
        out = capsys.readouterr().out
        assert "sunspec-inverter (SunSpec at 40000, models 1, 103" in out, out
        # the written config: make its key as the unit would, then check it
        assert main(["key", "init", "--config", str(cfg)]) == 0
        assert main(["config", "check", str(cfg)]) == 0
        assert "OK (5 meter(s), 0 replica(s))" in capsys.readouterr().out
        links = [line.split()[-1] for line in banner if "/dev/pts/" in line]
    finally:
        out = _stop(proc)
    assert "meterchain sim: stopped" in out
    assert links  # the pty ends it printed


def test_fault_mode_and_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    proc, banner = _start("--tcp", "eastron-sdm630:3", "--modbus-exception", "4")
    try:
        assert "(faults: Modbus exception 4)" in banner[0]
        read = next(c for c in _suggested(banner) if c[0] == "read")
        assert read[-2:] == ["--unit", "3"]
        assert main(read) != 0
        assert "exception 4" in capsys.readouterr().err.lower()
    finally:
        _stop(proc)
    for bad, flag in ((["--tcp", "no-such-profile"], "--tcp"),
                      (["--tcp", "eastron-sdm630:300"], "--tcp"),
                      (["--sunspec", "battery"], "--sunspec"),
                      (["--p1-fault", "fire"], "--p1-fault")):
        assert main(["sim", *bad, "--seconds", "1"]) == 2
        assert f"error: {flag}: " in capsys.readouterr().err


def test_pty_links_do_not_outlive_the_simulator() -> None:
    proc, banner = _start("--rtu", "eastron-sdm120:2", "--seconds", "600")
    tmp = Path(tempfile.gettempdir())
    workdirs = {os.path.dirname(p) for p in tmp.glob("meterchain-sim-*/rs485-a")}
    _stop(proc)
    assert workdirs and not any(os.path.exists(d) for d in workdirs)


def test_write_config_into_a_missing_directory_creates_nothing(tmp_path: Path) -> None:
    """The practice config's state directory is made beside a config that was written,
    never by creating the missing directory the technician named."""
    from drivers.sim.cli import write_config
    from ledger.errors import ConfigError

    with pytest.raises(ConfigError, match="--write-config: cannot write"):
        write_config(str(tmp_path / "missing" / "sim.toml"), [])
    assert not (tmp_path / "missing").exists()
    written = write_config(str(tmp_path / "sim.toml"), [])
    assert Path(written).is_file() and (tmp_path / "sim-state").is_dir()
