"""``meterchain run``, ``meterchain config check`` and ``meterchain status``.

(``meterchain demo`` is registered by ``meterchain.demo_cli``: it wires every package.)
"""

from __future__ import annotations

import argparse
import json
import os
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
                                   "Exit 0 if the agent runs and is healthy; 1 if it is "
                                   "degraded or critical, stopped, not responding (status "
                                   "older than a few write intervals) or not running; 2 on a "
                                   "usage error (bad config or option).")
    s.add_argument("--config", default=DEFAULT_CONFIG_PATH,
                   help=f"agent config file (default {DEFAULT_CONFIG_PATH})")
    s.add_argument("--status-file", help="read this status.json instead of the config's")
    s.add_argument("--json", action="store_true",
                   help="print the status JSON, with what status concludes under 'assessed' "
                        "(agent, health, exit_code, status_age_s)")
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
    from agent.service.status import assess, read_status, render_status

    path = args.status_file or str(load_config(args.config).status_path)
    if not os.path.exists(path):  # never ran with this config: not running, not misuse
        msg = (f"{path}: no status file -- the agent has not run with this config "
               "(systemctl status meterchain-agent)")
        if args.json:
            print(json.dumps({"assessed": {"agent": "never-ran", "exit_code": 1}}))
        print(f"meterchain status: {msg}", file=sys.stderr)
        return 1
    snap = read_status(path)
    now = time.time()
    verdict = assess(snap, now)
    if args.json:
        json.dump({**snap, "assessed": verdict}, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_status(snap, now))
    return int(verdict["exit_code"])
