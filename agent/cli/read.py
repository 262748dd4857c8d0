"""``meterchain read``: one meter from flags (:mod:`drivers.cli`), or with ``--config FILE
[--meter ID]`` the configured meters once, as ``telegraf --test`` does, so a config can
be tried as written before the service runs it.

Exit codes: 0 every value read; 1 some value or meter failed (each marked with its
error); 2 a usage error or a config whose meters do not pass ``config check``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from drivers import cli as drivers_cli
from ledger.errors import ConfigError, ConfigErrors, DeviceError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = drivers_cli.add_read_parser(sub)
    p.add_argument("--config", metavar="FILE",
                   help="read the meters of this agent config once (a table like "
                        "`telegraf --test`) instead of one meter given by flags")
    p.add_argument("--meter", action="append", default=[], metavar="ID",
                   help="with --config: only this meter (repeatable)")
    p.set_defaults(func=cmd_read)


def cmd_read(args: argparse.Namespace) -> int:
    if not args.config:
        if args.meter:
            raise ConfigError("--meter", "goes with --config FILE")
        return drivers_cli.cmd_read(args)
    return read_config(args.config, args.meter, raw=args.raw)


def read_config(path: str, only: list[str], *, raw: bool = False) -> int:
    """Read the configured meters once; print one table of every value.

    Raises:
        ConfigError: unreadable config. ConfigErrors: its meters have problems (as
        ``config check`` reports them), or ``--meter`` names no configured meter.
    """
    from agent.service.config import read_toml, validate_config
    from agent.service.daemon import meter_spec
    from agent.service.preflight import meter_problems

    v = validate_config(read_toml(path), source=path)
    problems = [e for e in v.problems if e.path.startswith("meters")]
    problems += meter_problems(v)
    if problems:
        raise ConfigErrors(problems, source=path)
    meters = list(v.config.meters)
    known = [m.id for m in meters]
    unknown = [i for i in only if i not in known]
    if unknown:
        raise ConfigError("--meter", f"no meter {unknown[0]!r} in {path} (meters: "
                          f"{', '.join(known)})")
    if only:
        meters = [m for m in meters if m.id in only]
    rows: list[drivers_cli.Row] = []
    failed = 0
    for m in meters:
        spec = meter_spec(m)
        try:
            got = asyncio.run(drivers_cli.read_once(spec, raw))
        except DeviceError as exc:
            failed += 1
            rows.append(drivers_cli.Row(m.id, "-", None, str(exc)))
            continue
        rows += got
        failed += any(r.error for r in got)
    drivers_cli.print_rows(rows, with_meter=True)
    print(f"{len(meters)} meter(s) read once from {path}: "
          + ("all values read" if not failed else f"{failed} with failures"),
          file=sys.stderr)
    return 1 if failed else 0
