"""The ``meterchain`` command: one dispatcher, each subsystem registers its own commands.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)`` which adds its
sub-commands and sets ``func`` on each parser; ``func(args)`` returns the exit code.
A :class:`~agent.errors.MeterchainError` (or a missing file) is printed as one clear
line on stderr with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import sys
from collections.abc import Sequence

from agent.errors import MeterchainError

COMMAND_MODULES: tuple[str, ...] = (
    "agent.cli_ledger",  # keygen, verify, export, show, prove, verify-proof
    "agent.cli_agent",  # run, config check, status, demo
    "drivers.cli",  # drivers, profile, scan, read
    "replica.cli",  # replica serve/enroll/revoke/list/mirror, audit
)

OPTIONAL_DEPENDENCIES: dict[str, str] = {
    # top-level module -> the extra that installs it
    "fastapi": "replica",
    "uvicorn": "replica",
    "httpx": "replica",
    "psycopg": "replica",
    "psycopg_pool": "replica",
}
"""Modules only some installs have: a gateway installs ``meterchain`` without extras."""


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The extra that would provide the missing module, or None if it is not optional."""
    return OPTIONAL_DEPENDENCIES.get((exc.name or "").split(".")[0])


EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran and found a problem (bad chain, discrepancy)
EXIT_USAGE = 2  # bad input: missing path, bad config, unreadable key


def _version() -> str:
    try:
        return importlib.metadata.version("meterchain")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meterchain",
        description="Trustworthy meter data at the edge: signed, hash-chained meter readings.",
    )
    parser.add_argument("--version", action="version", version=f"meterchain {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # subsystem not present in this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
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
            raise
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


if __name__ == "__main__":
    sys.exit(main())
