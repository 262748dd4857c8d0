"""``meterchain replica token create|list|revoke``: API tokens for the replica's HTTP API.

Tokens are written to the replica's database directly (no HTTP endpoint makes one), so
only whoever runs the replica can hand them out. ``create`` prints the token once; the
database keeps only its SHA-256 (:mod:`replica.tokens`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from replica.auth import SCOPES


def register(sub: Any, with_config: Callable[[argparse.ArgumentParser],
                                            argparse.ArgumentParser]) -> None:
    """Add ``token`` (with ``create``, ``list``, ``revoke``) to the ``replica`` group."""
    tp = sub.add_parser("token", help="create, list and revoke API tokens",
                        description="API tokens for reading the replica over HTTP. "
                        f"Scopes: {', '.join(SCOPES)}.")
    tsub = tp.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    p = with_config(tsub.add_parser("create", help="make a token (printed once)"))
    p.add_argument("--name", required=True, help="who or what the token is for")
    p.add_argument("--scope", action="append", required=True, metavar="SCOPE",
                   help=f"a scope to grant ({', '.join(SCOPES)}); repeat or comma-separate")
    p.set_defaults(func=cmd_create)
    p = with_config(tsub.add_parser("list", help="list tokens (ids, names, scopes; never secrets)"))
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)
    p = with_config(tsub.add_parser("revoke", help="revoke a token at once"))
    p.add_argument("token_id", metavar="TOKEN_ID", help="the id 'token list' shows")
    p.set_defaults(func=cmd_revoke)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _open(args: argparse.Namespace) -> Any:
    from replica.config import load_config
    from replica.storage.base import open_storage

    return open_storage(load_config(args.config).storage_url, pool_size=1)


def cmd_create(args: argparse.Namespace) -> int:
    """Raises: ConfigError (bad config), EnrollmentError (bad name/scope)."""
    from replica.tokens import create_token, parse_scopes

    scopes = parse_scopes(args.scope)
    storage = _open(args)
    try:
        text, rec = create_token(storage, args.name, scopes, _now_ms())
    finally:
        storage.close()
    print(text)

    print(f"token {rec.id} ({rec.name}) with scope(s) {' '.join(rec.scopes)}: store it now, "
          "it is not shown again (the replica keeps only its hash)", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from replica.enroll import format_time

    storage = _open(args)
    try:
        recs = storage.tokens()
    finally:
        storage.close()
    if args.json:
        print(json.dumps([{"id": r.id, "name": r.name, "scopes": list(r.scopes),
                           "created_ms": r.created_ms, "revoked_ms": r.revoked_ms}
                          for r in recs]))
        return 0
    print(f"{'ID':16}  {'CREATED':24}  {'REVOKED':24}  {'SCOPES':26}  NAME")
    for r in recs:
        print(f"{r.id:16}  {format_time(r.created_ms):24}  {format_time(r.revoked_ms):24}  "
              f"{' '.join(r.scopes):26}  {r.name}")
    print(f"{len(recs)} token(s)")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    """Raises: EnrollmentError (no such token)."""
    from replica.enroll import format_time
    from replica.tokens import revoke_token

    storage = _open(args)
    try:
        rec = revoke_token(storage, args.token_id, _now_ms())
    finally:
        storage.close()
    print(f"revoked token {rec.id} ({rec.name}) from {format_time(rec.revoked_ms)}")
    return 0
