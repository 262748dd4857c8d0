"""``meterchain demo``: simulated meters, the agent and a local replica, wired together."""

from __future__ import annotations

import argparse

from ledger.errors import StoreError

EXIT_OK = 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run simulated meters, the agent and a local replica "
                       "(or, with --ledger-only, seal synthetic readings into a ledger)")
    p.add_argument("--ledger", metavar="DIR", help="keep the ledger in DIR (default: temporary)")
    p.add_argument("--seconds", type=float, default=12.0, metavar="S",
                   help="how long the pipeline demo runs (default 12)")
    p.add_argument("--no-community", action="store_true",
                   help="skip the energy community settled over a simulated past day at "
                   "the end")
    p.add_argument("--ledger-only", action="store_true",
                   help="only seal synthetic readings into a verified ledger (no meters, "
                   "agent or replica)")
    p.add_argument("--blocks", type=int, default=12, metavar="N",
                   help="blocks to seal with --ledger-only (default 12)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from meterchain.demo import run_ledger_demo

    if not args.ledger_only:
        from meterchain.demo_pipeline import run_pipeline_demo

        if not 1.0 <= args.seconds <= 3600.0:
            raise StoreError(f"--seconds must be in 1..3600, got {args.seconds}")
        run_pipeline_demo(args.ledger, seconds=args.seconds, community=not args.no_community)
        return EXIT_OK
    if args.blocks < 1:
        raise StoreError(f"--blocks must be at least 1, got {args.blocks}")
    run_ledger_demo(args.ledger, blocks=args.blocks)
    return EXIT_OK
