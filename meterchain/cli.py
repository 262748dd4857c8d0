"""The ``meterchain`` command: one dispatcher, each subsystem registers its own commands.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)`` which adds its
sub-commands and sets ``func`` on each parser; ``func(args)`` returns the exit code.
A :class:`~ledger.errors.MeterchainError` (or a missing file) is printed as one clear
line on stderr with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from ledger.errors import MeterchainError

COMMANDS: dict[str, str] = {
    # command -> the module that registers it. Only that module is imported to run a
    # command, so `meterchain run` on a gateway does not load the replica's HTTP stack.
    "keygen": "agent.cli.ledger",
    "verify": "agent.cli.ledger",
    "export": "agent.cli.ledger",
    "show": "agent.cli.ledger",
    "prove": "agent.cli.ledger",
    "verify-proof": "agent.cli.ledger",
    "demo": "meterchain.demo_cli",
    "run": "agent.cli.run",
    "config": "agent.cli.run",
    "status": "agent.cli.run",
    "key": "agent.cli.key",
    "drivers": "drivers.cli",
    "profile": "drivers.cli",
    "scan": "drivers.cli",
    "read": "agent.cli.read",
    "sim": "drivers.sim.cli",
    "replica": "replica.cli",
    "audit": "replica.cli",
    "settle": "meterchain.settle_cli",
}
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(COMMANDS.values()))

OPTIONAL_DEPENDENCIES: dict[str, str] = {
    # top-level module -> the extra that installs it
    "fastapi": "replica",
    "uvicorn": "replica",
    "httpx": "replica",
    "psycopg": "replica",
    "psycopg_pool": "replica",
    "prometheus_client": "replica",
}
"""Modules only some installs have: a gateway installs ``meterchain`` without extras."""


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The extra that would provide the missing module, or None if it is not optional."""
    return OPTIONAL_DEPENDENCIES.get((exc.name or "").split(".")[0])


QUIET_LIBRARIES = ("httpx", "httpcore")
"""Libraries whose INFO lines are shown only with -v."""

EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran and found a problem (bad chain, discrepancy)
EXIT_USAGE = 2  # bad input: missing path, bad config, unreadable key


def _version() -> str:
    try:
        return importlib.metadata.version("meterchain")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def docs_dir() -> Path:
    """Where the operator docs are: installed with the program under
    ``<prefix>/share/doc/meterchain``, else (running from a checkout) its ``docs/``."""
    installed = Path(sys.prefix) / "share" / "doc" / "meterchain"
    if (installed / "agent.md").is_file():
        return installed
    checkout = Path(__file__).resolve().parents[1] / "docs"
    return checkout if (checkout / "agent.md").is_file() else installed


def _command_word(argv: Sequence[str]) -> str | None:
    """The sub-command named on the command line (the first word not an option)."""
    for word in argv:
        if not word.startswith("-"):
            return word
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv`` naming a known command, only its module is loaded."""
    parser = argparse.ArgumentParser(
        prog="meterchain",
        description="Trustworthy meter data at the edge: signed, hash-chained meter readings.",
        epilog=f"Documentation: {docs_dir()} (agent.md: every config key; install.md: "
               "the technician's guide). `meterchain COMMAND --help` for a command.",
    )
    parser.add_argument("--version", action="version", version=f"meterchain {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    word = _command_word(argv) if argv is not None else None
    if word in COMMANDS:
        modules = [COMMANDS[word]]
    elif word is None and argv is not None and "--version" in argv:
        modules = []
    else:  # help, or an unknown word argparse will report with the full list
        modules = list(COMMAND_MODULES)
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # subsystem not present in this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.verbose:
        # drivers.modbus_bus keeps pymodbus quiet (its errors arrive as DeviceError).
        logging.getLogger("pymodbus").setLevel(logging.DEBUG)
    else:
        # HTTP clients log every request at INFO: a command's output is its own lines.
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(func(args) or 0)
    except MeterchainError as exc:
        print(f"meterchain {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        print(f"meterchain {args.command}: error: {exc.strerror}: {exc.filename}",
              file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        extra = missing_extra(exc)
        if extra is None:
            return _unexpected(args.command, argv, exc)
        print(f"meterchain {args.command}: error: this command needs the '{extra}' extra "
              f"({exc.name} is not installed): pip install 'meterchain[{extra}]'",
              file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (`meterchain drivers | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print(f"meterchain {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback
        return _unexpected(args.command, argv, exc)


def _unexpected(command: str | None, argv: Sequence[str], exc: BaseException) -> int:
    """One line on stderr naming the log that holds the traceback; exit code 1."""
    log = write_crash_log(command, argv)
    where = f"details in {log}" if log else "no log could be written; rerun with -v"
    print(f"meterchain {command}: unexpected error: {type(exc).__name__}: {exc} ({where})",
          file=sys.stderr)
    return EXIT_FAILURE


def crash_log_dir() -> Path:
    """Where unexpected errors are logged: $MC_LOG_DIR, else $XDG_STATE_HOME/meterchain,
    else ~/.local/state/meterchain (the temporary directory when there is no home)."""
    if os.environ.get("MC_LOG_DIR"):
        return Path(os.environ["MC_LOG_DIR"])
    state = os.environ.get("XDG_STATE_HOME") or (
        str(Path.home() / ".local" / "state") if os.environ.get("HOME") else "")
    if state:
        return Path(state) / "meterchain"
    return Path(tempfile.gettempdir())


def write_crash_log(command: str | None, argv: Sequence[str]) -> Path | None:
    """Write the current exception's traceback to a new file (0600); return its path, or
    None if no directory could take it. Call only from an ``except`` block."""
    text = (f"meterchain {_version()} {' '.join(argv)}\n"
            f"{traceback.format_exc()}")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for d in (crash_log_dir(), Path(tempfile.gettempdir())):
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"meterchain-{command or 'error'}-{stamp}-",
                                        suffix=".log", dir=d)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            return Path(name)
        except OSError:
            continue
    return None


if __name__ == "__main__":
    sys.exit(main())
