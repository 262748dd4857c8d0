"""deploy/demo.sh and deploy/dev-env.sh: one line per step, pip's output in a named log,
and the demo ends by saying how to run meterchain (it is not on PATH).

The scripts run for real in a copy of deploy/ whose ``.venv`` holds stand-ins for pip
and meterchain (shell scripts), so the test needs no network and no minute of pip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIP_NOISE = "\n".join(f"Collecting package{i}\n  Downloading ... (1.2 MB)" for i in range(200))


def _tree(tmp_path: Path, pip_rc: int) -> Path:
    top = tmp_path / "checkout"
    shutil.copytree(ROOT / "deploy", top / "deploy")
    bin_ = top / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").write_text(f"#!/bin/sh\ncat <<'X'\n{PIP_NOISE}\nX\n"
                                 f"echo 'ERROR: No matching distribution' >&2\nexit {pip_rc}\n")
    (bin_ / "meterchain").write_text("#!/bin/sh\necho \"demo ran with: $*\"\n")
    for f in bin_.iterdir():
        f.chmod(0o755)
    return top


def test_install_is_one_line_per_step_and_the_demo_says_what_next(tmp_path: Path) -> None:
    top = _tree(tmp_path, 0)
    proc = subprocess.run(["bash", str(top / "deploy" / "demo.sh"), "--seconds", "3"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert "Collecting" not in proc.stdout and "Collecting" not in proc.stderr
    assert out[0].startswith("installing meterchain [replica] into .venv (about a minute; log: ")
    assert "demo ran with: demo --seconds 3" in out
    assert f"  {top}/.venv/bin/meterchain --help" in out
    assert len(out) < 12
    log = top / ".venv" / "install.log"
    assert "Collecting package199" in log.read_text()  # pip's output is kept, not lost


def test_a_failed_install_names_the_log_and_stops(tmp_path: Path) -> None:
    top = _tree(tmp_path, 1)
    proc = subprocess.run(["bash", str(top / "deploy" / "demo.sh")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    log = top / ".venv" / "install.log"
    assert f"error: installing meterchain failed; pip's output is in {log}" in proc.stderr
    assert "No matching distribution" in proc.stderr  # the log's last lines, as a hint
    assert "demo ran" not in proc.stdout
    assert "Collecting package1\n" not in proc.stdout
