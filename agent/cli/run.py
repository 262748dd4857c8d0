"""``meterchain run``, ``meterchain config check`` and ``meterchain status``.

(``meterchain demo`` is registered by ``meterchain.demo_cli``: it wires every package.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from agent.service.config import DEFAULT_CONFIG_PATH, load_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the gateway agent (systemd Type=notify service)",
                       description="Poll meters, seal readings into signed blocks, forward "
                                   "them to replicas. Stops cleanly on SIGTERM.")
    p.add_argument("--config", default=DEFAULT_CONFIG_PATH,
                   help=f"agent config file (default {DEFAULT_CONFIG_PATH})")
    p.set_defaults(func=cmd_run)

    c = sub.add_parser("config", help="check an agent config file")
    csub = c.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    chk = csub.add_parser("check", help="validate a config and list every problem",
                          description="Make every start-up check `meterchain run` makes "
                                      "before it needs a meter (config, drivers' settings, "
                                      "key files, metrics textfile). Exit 0 if all pass; "
                                      "otherwise print every problem with its key path, as "
                                      "`run` would, and exit 2.")
    chk.add_argument("file", help="config file (TOML)")
    chk.set_defaults(func=cmd_config_check)

    s = sub.add_parser("status", help="show the running agent's meters, chain, replicas, disk",
                       description="Read the status the agent writes next to its state file. "
                                   "Exit 1 if the agent reports a critical condition or has "
                                   "stopped updating its status.")
    s.add_argument("--config", default=DEFAULT_CONFIG_PATH,
                   help=f"agent config file (default {DEFAULT_CONFIG_PATH})")
    s.add_argument("--status-file", help="read this status.json instead of the config's")
    s.add_argument("--json", action="store_true", help="print the raw status JSON")
    s.set_defaults(func=cmd_status)


def cmd_run(args: argparse.Namespace) -> int:
    from agent.service.daemon import run_agent
    from agent.service.logsetup import setup_logging
    from agent.service.preflight import check_startup

    cfg = check_startup(args.config)  # the very checks `config check` makes
    setup_logging(cfg.logging.level if not args.verbose else "debug", cfg.logging.format)
    return run_agent(cfg)


def cmd_config_check(args: argparse.Namespace) -> int:
    from agent.service.preflight import check_startup

    # Every start-up check `meterchain run` makes before it needs a meter: config,
    # drivers' settings, key files, the metrics textfile. No port is opened.
    cfg = check_startup(args.file)
    print(f"{args.file}: OK ({len(cfg.meters)} meter(s), {len(cfg.replicas)} replica(s))")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from agent.service.status import exit_code, read_status, render_status

    path = args.status_file or str(load_config(args.config).status_path)
    snap = read_status(path)
    if args.json:
        json.dump(snap, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_status(snap, time.time()))
    return exit_code(snap)
