"""Read-only summaries the web view and scripts share: one gateway's chain facts and
this replica's heads against its configured peers (``docs/replica-api.md``).

- ``GET /v1/gateways/{gw}/facts``: name, site, height, head hash, enrolment and
  revocation, last push accepted, time of the first and last reading held, fork count.
- ``GET /v1/peers/heads``: for every gateway any side knows, this replica's head and each
  peer's (from the peers' ``GET /v1/gateways``), the lag in blocks and whether the
  heads disagree. Peers are fetched at most once per ``audit.cache_s`` seconds, each
  with ``audit.timeout_s``; an unreachable peer is reported, never fatal.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ledger import Header
from ledger.constants import HEADER_SIZE
from ledger.errors import ConfigError, ForwardingError
from replica.client import ClientConfig, GatewayInfo, ReplicaClient
from replica.service import ReplicaService
from replica.storage.base import ForkRecord
from replica.ui.config import AuditPeersConfig


def gateway_facts(service: ReplicaService, key_hex: str) -> dict[str, Any]:
    """Chain facts of one enrolled gateway.

    Raises:
        Refusal: malformed key (400) or unknown gateway (404).
    """
    rec = service.enrolled(key_hex)
    first_ms = last_ms = None
    if rec.head_header is not None:
        last_ms = Header.decode(bytes(rec.head_header)).time_end_ms
        first = service.storage.blocks(rec.key, 0, 1)
        if first:
            first_ms = Header.decode(bytes(first[0][:HEADER_SIZE])).time_start_ms
    forks = len(fork_records(service, rec.key))
    return {
        "key": rec.key.hex(), "name": rec.name, "site": rec.site, "height": rec.height,
        "head_hash": None if rec.head_hash is None else rec.head_hash.hex(),
        "enrolled_ms": rec.enrolled_ms, "revoked_at_ms": rec.revoked_at_ms,
        "last_seen_ms": rec.last_seen_ms, "first_reading_ms": first_ms,
        "last_reading_ms": last_ms, "forks": forks,
    }


def read_token_file(path: Path) -> str:
    """The token in ``path`` (first line, stripped).

    Raises:
        ConfigError: the file cannot be read, is empty, or others may read it.
    """
    try:
        if path.stat().st_mode & 0o077:
            raise ConfigError("audit.token_file", f"{path} is readable by others; "
                              f"chmod 600 it")
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("audit.token_file", f"cannot read {path}: {exc}") from None
    if not text:
        raise ConfigError("audit.token_file", f"{path} is empty")
    return text.splitlines()[0].strip()


FORK_PAGE = 500


def fork_records(service: ReplicaService, key: bytes) -> list[ForkRecord]:
    """Every piece of fork evidence the replica keeps for one gateway (storage keeps at
    most ``max_forks_per_height`` per height), read a page at a time."""
    out: list[ForkRecord] = []
    after: tuple[bytes, int, bytes] = (key, -1, b"")
    while True:
        page = service.storage.forks(after, FORK_PAGE)
        mine = [f for f in page if f.key == key]
        out.extend(mine)
        if len(mine) < FORK_PAGE:
            return out
        last = mine[-1]
        after = (last.key, last.height, last.header_b)


def fork_json(f: ForkRecord) -> dict[str, Any]:
    """One piece of fork evidence as ``GET /v1/forks`` writes it."""
    def side(header: bytes, sig: bytes) -> dict[str, str]:
        return {"header": base64.b64encode(header).decode("ascii"), "signature": sig.hex()}

    return {"key": f.key.hex(), "height": f.height, "a": side(f.header_a, f.sig_a),
            "b": side(f.header_b, f.sig_b), "seen_ms": f.seen_ms}


class PeerHeads:
    """Fetches and caches the peers' heads (thread-safe; one fetch at a time)."""

    def __init__(self, config: AuditPeersConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._token: str | None = None
        if config.token_file is not None:
            self._token = read_token_file(config.token_file)
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def _fetch_one(self, url: str) -> tuple[str, list[GatewayInfo] | None, str | None]:
        try:
            with ReplicaClient(url, ClientConfig(timeout_s=self.config.timeout_s),
                               token=self._token) as c:
                return url, c.gateways(), None
        except ForwardingError as exc:
            return url, None, str(exc)

    def peers(self) -> dict[str, Any]:
        """``{url: {"gateways": {key_hex: (height, hash_hex)}, "error": str|None,
        "fetched_ms": int}}``, at most ``cache_s`` old."""
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self.config.cache_s:
                return self._cached[1]
            out: dict[str, Any] = {}
            if self.config.peers:
                with ThreadPoolExecutor(max_workers=len(self.config.peers)) as pool:
                    results = list(pool.map(self._fetch_one, self.config.peers))
                fetched = int(time.time() * 1000)
                for url, gws, err in results:
                    out[url] = {"error": err, "fetched_ms": fetched, "gateways": {
                        g.key.hex(): (g.head.height, None if g.head.hash is None
                                      else g.head.hash.hex())
                        for g in (gws or [])}}
            self._cached = (now, out)
            return out


def compare_heads(local: list[dict[str, Any]], peers: dict[str, Any]) -> dict[str, Any]:
    """This replica's heads against each peer's: per gateway and peer, the peer's head,
    ``lag`` (this height minus the peer's; positive: the peer is behind) and ``status``:
    ``same``, ``peer-behind``, ``peer-ahead``, ``differs`` (same height, other hash),
    ``missing-here``, ``missing-there`` or ``unreachable``."""
    mine = {g["key"]: (g["height"], g["head_hash"], g["name"]) for g in local}
    keys = sorted(set(mine).union(*(set(p["gateways"]) for p in peers.values())))
    rows = []
    for key in keys:
        here = mine.get(key)
        cells = []
        for url, p in peers.items():
            cell: dict[str, Any] = {"peer": url, "height": None, "hash": None, "lag": None}
            there = p["gateways"].get(key)
            if p["error"] is not None:
                cell["status"] = "unreachable"
            elif there is None:
                cell["status"] = "missing-there"
            elif here is None:
                cell.update(height=there[0], hash=there[1], status="missing-here")
            else:
                cell.update(height=there[0], hash=there[1], lag=here[0] - there[0])
                if here[0] == there[0]:
                    cell["status"] = "same" if here[1] == there[1] else "differs"
                else:
                    cell["status"] = "peer-behind" if here[0] > there[0] else "peer-ahead"
            cells.append(cell)
        rows.append({"key": key, "name": here[2] if here else None,
                     "height": here[0] if here else None, "hash": here[1] if here else None,
                     "peers": cells})
    return {"peers": [{"url": u, "error": p["error"], "fetched_ms": p["fetched_ms"]}
                      for u, p in peers.items()], "gateways": rows}


def install_facts(app: FastAPI, svc: Callable[[], ReplicaService],
                  audit: AuditPeersConfig) -> None:
    """Add this module's ``/v1`` routes to ``app``, over the app's service.

    Routes are added to the app itself (not an included router) so that the access
    table sees each one's path template.
    """
    router = app
    peer_heads = PeerHeads(audit)

    @router.get("/v1/gateways/{gw}/facts")
    def facts(gw: str) -> dict[str, Any]:
        """Chain facts of one gateway: height, head hash, first and last reading time."""
        return gateway_facts(svc(), gw)

    @router.get("/v1/gateways/{gw}/forks")
    def gateway_forks(gw: str) -> Response:
        """Fork evidence of one gateway (as in ``GET /v1/forks``), as a JSON download."""
        rec = svc().enrolled(gw)
        body = {"forks": [fork_json(f) for f in fork_records(svc(), rec.key)]}
        return JSONResponse(body, headers={
            "Content-Disposition": f'attachment; filename="forks-{rec.key.hex()[:16]}.json"'})

    @router.get("/v1/peers/heads")
    async def peers_heads() -> dict[str, Any]:
        """This replica's heads against the configured peers' (``[audit] peers``)."""
        local = (await run_in_threadpool(svc().gateways))["gateways"]
        peers = await run_in_threadpool(peer_heads.peers)
        return compare_heads(local, peers)
