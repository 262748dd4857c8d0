"""Command-line tools over many replicas: ``meterchain audit`` and ``meterchain replica mirror``.

``register(replica_sub, top_sub)`` adds ``mirror`` to the ``replica`` group and ``audit``
to the top-level sub-commands (``replica/cli.py`` calls it). Exit codes follow
:mod:`meterchain.cli`: 0 all copies agree (perhaps lagging) / mirror complete, 1 a
discrepancy was found or the source served invalid blocks, 2 usage errors or an
unreachable replica, 3 (audit with ``--max-lag N``) a copy more than N blocks behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from pathlib import Path
from typing import Any, TextIO

from ledger.errors import ForwardingError
from replica.auditor import AuditConfig, run_audit
from replica.client import ClientConfig, ReplicaClient
from replica.mirror import HttpSink, MirrorConfig, ServiceSink, Sink, mirror

EXIT_OK, EXIT_FOUND, EXIT_USAGE, EXIT_LAG = 0, 1, 2, 3


class ProgressBar:
    """A one-line progress bar on a stream (stderr), redrawn in place."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.label, self.stream, self.width = label, stream or sys.stderr, width
        self._drawn = False

    def __call__(self, done: int, total: int, what: str) -> None:
        filled = self.width if total == 0 else self.width * done // total
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {what:<16}")
        self._drawn = True
        if done >= total:
            self.stream.write("\n")
            self._drawn = False
        self.stream.flush()


TOKEN_ENV = "MC_REPLICA_TOKEN"
"""Environment variable holding the API token for every replica without ``--token-file``."""


def _client_config(args: argparse.Namespace) -> ClientConfig:
    return ClientConfig(timeout_s=args.timeout, page_size=args.page_size)


def _token_for(args: argparse.Namespace, url: str) -> str | None:
    """The API token for ``url``: ``--token-file URL=PATH``, else a bare
    ``--token-file PATH``, else ``$MC_REPLICA_TOKEN``, else none.

    Raises:
        ConfigError: a token file cannot be read or holds no token (the token is never
            part of the message).
    """
    from ledger.errors import ConfigError

    chosen: str | None = None
    for spec in args.token_file or []:
        target, sep, path = spec.rpartition("=")
        if sep and _check_url(target):
            if target.rstrip("/") == url.rstrip("/"):
                chosen = path
                break
        elif chosen is None:
            chosen = spec
    if chosen is None:
        return os.environ.get(TOKEN_ENV) or None
    try:
        text = Path(chosen).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("--token-file", f"cannot read {chosen}: "
                          f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    if not text:
        raise ConfigError("--token-file", f"{chosen} is empty")
    return text


def _client(args: argparse.Namespace, url: str) -> ReplicaClient:
    return ReplicaClient(url, _client_config(args), token=_token_for(args, url))


def _add_client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=ClientConfig().timeout_s, metavar="S",
                   help="seconds per HTTP request (default %(default)s)")
    p.add_argument("--page-size", type=int, default=ClientConfig().page_size, metavar="N",
                   help="blocks fetched per request (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar on stderr")
    p.add_argument("--token-file", action="append", metavar="[URL=]PATH",
                   help="file holding the API token (scope read:chain) for URL, or for every "
                   f"replica without its own; default ${TOKEN_ENV}. Repeatable.")


def _usage(cmd: str, message: str) -> int:
    print(f"meterchain {cmd}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _check_url(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def cmd_audit(args: argparse.Namespace) -> int:
    """Compare every gateway's copies across the replicas given."""
    urls: list[str] = args.urls
    if len(urls) < 2:
        return _usage("audit", "give at least two replica URLs to compare")
    bad = [u for u in urls if not _check_url(u)]
    if bad:
        return _usage("audit", f"not an http(s) URL with a host: {bad[0]!r}")
    if args.max_lag is not None and args.max_lag < 0:
        return _usage("audit", "--max-lag must be at least 0")
    if args.page_size < 1:
        return _usage("audit", "--page-size must be at least 1")
    if not args.timeout > 0:
        return _usage("audit", f"--timeout must be more than 0 seconds, got {args.timeout}")
    clients = [_client(args, u) for u in urls]
    try:
        progress = None if args.quiet else ProgressBar("audit")
        report = run_audit(clients, AuditConfig(), progress)
    except ForwardingError as exc:
        return _usage("audit", f"cannot audit: {exc}")
    finally:
        for c in clients:
            c.close()
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        for f in report.sorted_findings():
            print(f.line())
        if not report.ok:
            verdict = f"{len(report.discrepancies)} discrepancy(ies)"
        elif report.lags:
            verdict = (f"copies agree; {len(report.lags)} lagging (at most "
                       f"{report.max_lag_blocks} block(s) behind)")
        else:
            verdict = "all copies agree"
        print(f"{len(urls)} replicas, {report.gateways} gateway(s), "
              f"{report.blocks_checked} block(s) verified: {verdict}")
    if not report.ok:
        return EXIT_FOUND
    if args.max_lag is not None and report.max_lag_blocks > args.max_lag:
        if not args.json:
            print(f"a copy is {report.max_lag_blocks} block(s) behind, more than --max-lag "
                  f"{args.max_lag}", file=sys.stderr)
        return EXIT_LAG
    return EXIT_OK


def _local_sink(args: argparse.Namespace) -> tuple[Sink, Any]:
    """The sink for ``--to URL`` or ``--config FILE`` and the thing to close afterwards."""
    if args.to:
        client = _client(args, args.to)
        return HttpSink(client), client
    from replica.config import load_config
    from replica.storage.base import open_storage

    cfg = load_config(args.config)
    storage = open_storage(cfg.storage_url)
    return ServiceSink(storage, cfg.limits, name=str(args.config)), storage


def cmd_mirror(args: argparse.Namespace) -> int:
    """Pull, verify and store every enrolled gateway's new blocks from another replica."""
    if not _check_url(args.source):
        return _usage("replica mirror", f"--from is not an http(s) URL: {args.source!r}")
    if args.to and not _check_url(args.to):
        return _usage("replica mirror", f"--to is not an http(s) URL: {args.to!r}")
    if args.page_size < 1 or args.push_batch < 1:
        return _usage("replica mirror", "--page-size and --push-batch must be at least 1")
    source = _client(args, args.source)
    sink, closer = _local_sink(args)
    try:
        progress = None if args.quiet else ProgressBar("mirror")
        report = mirror(source, sink, MirrorConfig(push_batch=args.push_batch), progress)
    except ForwardingError as exc:
        return _usage("replica mirror", f"cannot mirror: {exc}")
    finally:
        source.close()
        closer.close()
    if args.json:
        print(json.dumps({
            "ok": report.ok, "source": report.source, "stored": report.stored,
            "gateways": [{"key": r.key.hex(), "status": r.status, "stored": r.stored,
                          "height": r.height, "detail": r.detail} for r in report.results],
        }))
    else:
        for r in report.results:
            print(r.line())
        print(f"{len(report.results)} gateway(s) from {report.source}: "
              f"{report.stored} block(s) stored")
    return EXIT_OK if report.ok else EXIT_FOUND


def register(replica_sub: Any, top_sub: Any) -> None:
    """Add ``mirror`` to the ``replica`` group's sub-commands and ``audit`` to the
    top-level ones (``replica/cli.py`` calls this with both)."""
    p = top_sub.add_parser("audit", help="compare every gateway's chain across replicas",
                       description="Compare every gateway's head and chain across replicas: "
                       "lagging copies, missing blocks, forks and tampered blocks with the "
                       "first divergent height. Exit 0 when the copies agree (lag between "
                       "consistent copies is reported, not a failure), 1 on a discrepancy "
                       "(fork, a block that differs, a block missing below a head), 2 on a "
                       "usage error or an unreachable replica, 3 with --max-lag when a copy "
                       "is further behind.")
    p.add_argument("urls", nargs="+", metavar="URL", help="replica base URLs (two or more)")
    p.add_argument("--max-lag", type=int, default=None, metavar="N",
                   help="exit 3 when a copy is more than N blocks behind (default: lag "
                        "never fails)")
    _add_client_options(p)
    p.set_defaults(func=cmd_audit)

    m = replica_sub.add_parser("mirror", help="pull and verify another replica's ledgers",
                         description="Copy every enrolled gateway's new blocks from another "
                         "replica, verified from the local head; invalid blocks are "
                         "reported and never stored.")
    m.add_argument("--from", dest="source", required=True, metavar="URL",
                   help="the replica to pull from")
    where = m.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", metavar="FILE", help="the local replica's replica.toml")
    where.add_argument("--to", metavar="URL", help="push to a local replica over HTTP instead")
    m.add_argument("--push-batch", type=int, default=MirrorConfig().push_batch, metavar="N",
                   help="blocks per push (default %(default)s)")
    _add_client_options(m)
    m.set_defaults(func=cmd_mirror)


__all__ = ["ProgressBar", "cmd_audit", "cmd_mirror", "register"]
