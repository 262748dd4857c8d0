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
import sys
from collections.abc import Sequence

from agent.errors import MeterchainError

COMMAND_MODULES: tuple[str, ...] = (
    "agent.cli_ledger",  # keygen, verify, export, show, prove, verify-proof
    "agent.cli_agent",  # run, config check, status, demo
    "drivers.cli",  # drivers, profile, scan, read
    "replica.cli",  # replica serve/enroll/revoke/list/mirror, audit
)

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
    except KeyboardInterrupt:
        print(f"meterchain {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
