"""The dispatcher turns errors into one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys


def test_no_command_prints_help_and_fails() -> None:
    proc = subprocess.run([sys.executable, "-m", "agent.cli"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "usage: meterchain" in proc.stdout
