"""The dispatcher turns errors into one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_no_command_prints_help_and_fails() -> None:
    proc = subprocess.run([sys.executable, "-m", "meterchain"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "usage: meterchain" in proc.stdout


def test_output_cut_short_by_the_reader_is_not_a_traceback() -> None:
    proc = subprocess.run(
        f"{sys.executable} -m meterchain.cli drivers | head -c 10", shell=True, capture_output=True,
        text=True,
    )
    assert len(proc.stdout) == 10
    assert "Traceback" not in proc.stderr


def test_missing_optional_extra_names_the_extra() -> None:
    """Without the replica extra (simulated by hiding httpx), audit says what to install."""
    code = (
        "import sys; sys.modules['httpx'] = None\n"
        "from meterchain.cli import main\n"
        "sys.exit(main(['audit', 'http://127.0.0.1:1', 'http://127.0.0.1:2']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "pip install 'meterchain[replica]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_command_table_matches_what_the_modules_register() -> None:
    """COMMANDS names the module of every command; building the full parser shows drift."""
    import argparse
    import importlib

    from meterchain.cli import COMMAND_MODULES, COMMANDS

    registered: dict[str, str] = {}
    for name in COMMAND_MODULES:
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        importlib.import_module(name).register(sub)
        for command in sub.choices:
            registered[command] = name
    assert registered == COMMANDS


def test_running_a_gateway_command_does_not_load_the_replica_stack() -> None:
    code = (
        "import sys\n"
        "from meterchain.cli import build_parser\n"
        "build_parser(['config', 'check', 'x.toml'])\n"
        "print(sorted(m for m in ('httpx', 'fastapi', 'uvicorn', 'replica.cli') "
        "if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.strip() == "[]"


def test_unexpected_error_is_one_line_naming_a_log_with_the_traceback(tmp_path: Path) -> None:
    """A bug (here: a command whose code raises ZeroDivisionError) is not a traceback on
    the terminal but one line naming the log file that holds it."""
    code = (
        "import sys\n"
        "import drivers.cli\n"
        "def boom(args):\n"
        "    return 1 // 0\n"
        "orig = drivers.cli.register\n"
        "def register(sub):\n"
        "    orig(sub)\n"
        "    sub.choices['drivers'].set_defaults(func=boom)\n"
        "drivers.cli.register = register\n"
        "from meterchain.cli import main\n"
        "sys.exit(main(['drivers']))\n"
    )
    env = dict(__import__("os").environ, MC_LOG_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "unexpected error: ZeroDivisionError" in lines[0]
    logs = list(tmp_path.glob("meterchain-drivers-*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[0]
    assert "Traceback" in logs[0].read_text() and "ZeroDivisionError" in logs[0].read_text()
    assert logs[0].stat().st_mode & 0o077 == 0


def test_help_says_where_the_docs_are() -> None:
    from meterchain.cli import docs_dir

    proc = subprocess.run([sys.executable, "-m", "meterchain", "--help"], capture_output=True,
                          text=True)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert f"Documentation: {docs_dir()} (agent.md: every config key" in text
    assert (docs_dir() / "agent.md").is_file() and (docs_dir() / "install.md").is_file()
