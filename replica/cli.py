"""``meterchain replica serve|enroll|revoke|list`` (and the tools' commands, if present).

Imports of the replica's dependencies (FastAPI, uvicorn, database drivers) happen only
when a command runs, so ``meterchain`` works without the ``[replica]`` extra.
The mirror and audit commands live in ``replica.tools``: when that module exists its
``register(replica_subparsers, top_subparsers)`` adds ``replica mirror`` and ``audit``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import ssl
import sys
import time
from typing import Any

from ledger.errors import ConfigError

REPLICA_EXTRA_MODULES = frozenset({"fastapi", "uvicorn", "httpx", "psycopg", "psycopg_pool",
                                   "prometheus_client"})
"""Top-level modules only the ``replica`` extra installs."""


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """``"replica"`` when ``exc`` is a module of the replica extra, else None."""
    return "replica" if (exc.name or "").split(".")[0] in REPLICA_EXTRA_MODULES else None

DEFAULT_CONFIG = "replica.toml"


def register(subparsers: Any) -> None:
    """Add ``replica`` (and whatever ``replica.tools`` adds) to the top-level parser."""
    rp = subparsers.add_parser("replica", help="run and administer a replica",
                               description="Run and administer a replica.")
    sub = rp.add_subparsers(dest="replica_command", metavar="SUBCOMMAND", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", default=DEFAULT_CONFIG,
                       help=f"replica config file (default {DEFAULT_CONFIG})")
        return p

    p = with_config(sub.add_parser("serve", help="serve the replica API"))
    p.set_defaults(func=cmd_serve)

    p = with_config(sub.add_parser("enroll", help="accept blocks from a gateway key"))
    p.add_argument("pubkey", metavar="PUBKEY", help="gateway public key, 64 hex characters")
    p.add_argument("--name", required=True, help="name of the gateway")
    p.add_argument("--site", default=None, help="where the gateway is installed")
    p.set_defaults(func=cmd_enroll)

    p = with_config(sub.add_parser("revoke", help="refuse a key's blocks from a time on"))
    p.add_argument("pubkey", metavar="PUBKEY", help="gateway public key or name")
    p.add_argument("--at", default=None,
                   help="revocation time: Unix ms or ISO 8601 (default now)")
    p.set_defaults(func=cmd_revoke)

    p = with_config(sub.add_parser("list", help="list enrolled gateways"))
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    importlib.import_module("replica.tokencli").register(sub, with_config)
    importlib.import_module("replica.meterdata.cli").register(sub)  # meter data commands

    # Hook for the mirror/audit tools (replica mirror, top-level audit).
    try:
        tools = importlib.import_module("replica.tools")
    except ModuleNotFoundError as exc:
        if exc.name == "replica.tools":
            return
        if missing_extra(exc) is None:
            raise
        _register_unavailable(sub, subparsers, exc)
        return
    tools.register(sub, subparsers)


def _register_unavailable(replica_sub: Any, top_sub: Any, exc: ModuleNotFoundError) -> None:
    """List ``replica mirror`` and ``audit`` even without the extra; running them says
    which extra to install (raised again inside the command, where the CLI reports it)."""

    def unavailable(_args: argparse.Namespace) -> int:
        raise exc

    for parent, name, text in ((replica_sub, "mirror", "pull and verify another replica"),
                               (top_sub, "audit", "compare every gateway's chain across replicas")):
        p = parent.add_parser(name, help=f"{text} (needs meterchain[replica])")
        p.add_argument("args", nargs=argparse.REMAINDER)
        p.set_defaults(func=unavailable)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _open(args: argparse.Namespace) -> Any:
    from replica.config import load_config
    from replica.storage.base import open_storage

    cfg = load_config(args.config)
    return open_storage(cfg.storage_url, pool_size=1)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until interrupted. Raises: ConfigError, KeyFileError, ReplicaStoreError."""
    import uvicorn

    from replica.app import CONFIG_ENV, create_app
    from replica.config import load_config
    from replica.storage.base import open_storage

    cfg = load_config(args.config)
    create_app(cfg)  # fail fast on a bad utility key
    open_storage(cfg.storage_url, pool_size=1).close()  # fail fast; creates the schema once
    for name, path in (("listen.tls_cert", cfg.tls_cert), ("listen.tls_key", cfg.tls_key),
                       ("listen.tls_client_ca", cfg.tls_client_ca)):
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(name, f"{path} is missing or unreadable", source=cfg.source)
    os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    mtls: dict[str, Any] = {}
    if cfg.tls_client_ca is not None:  # client certificates required, besides tokens
        mtls = {"ssl_ca_certs": str(cfg.tls_client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    uvicorn.run("replica.app:app_from_env", factory=True, host=cfg.host, port=cfg.port,
                workers=cfg.workers, log_level="info", access_log=False,
                ssl_certfile=cfg.tls_cert, ssl_keyfile=cfg.tls_key, **mtls)
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    from replica.enroll import enroll

    storage = _open(args)
    try:
        rec = enroll(storage, args.pubkey, args.name, args.site, _now_ms())
    finally:
        storage.close()
    print(f"enrolled {rec.key.hex()} as {rec.name!r}" + (f" at {rec.site!r}" if rec.site else ""))
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from replica.enroll import format_time, parse_time_ms, revoke

    at = _now_ms() if args.at is None else parse_time_ms(args.at)
    storage = _open(args)
    try:
        rec = revoke(storage, args.pubkey, at)
    finally:
        storage.close()
    print(f"revoked {rec.key.hex()} ({rec.name}) from {format_time(rec.revoked_at_ms)}; "
          "blocks ending before then stay valid")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from replica.enroll import format_time
    from replica.meterdata.cli import print_registry
    from replica.meterdata.listing import registry_json
    from replica.meterdata.query import MeterData

    storage = _open(args)
    try:
        recs = storage.gateways()
        registry = registry_json(MeterData(storage))
    finally:
        storage.close()
    if args.json:
        print(json.dumps([{"key": r.key.hex(), "name": r.name, "site": r.site,
                           "height": r.height, "last_seen_ms": r.last_seen_ms,
                           "revoked_at_ms": r.revoked_at_ms} for r in recs]))
        return 0
    print(f"{'KEY':64}  {'HEIGHT':>8}  {'LAST SEEN':24}  {'REVOKED':24}  NAME (SITE)")
    for r in recs:
        site = f" ({r.site})" if r.site else ""
        print(f"{r.key.hex()}  {r.height:>8}  {format_time(r.last_seen_ms):24}  "
              f"{format_time(r.revoked_at_ms):24}  {r.name}{site}")
    print(f"{len(recs)} gateway(s)")
    print()
    print_registry(registry, sys.stdout)
    return 0
