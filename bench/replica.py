"""Replica throughput: readings verified and stored per second, many gateways at once.

Starts a real replica process (``meterchain replica serve``) on loopback, enrolls
``--gateways`` gateways, pre-builds their chains with the ledger core, then has every
gateway push its chain concurrently (``--batch`` blocks per request, in order, over a
connection of its own) and times it. Reports readings/s and p50/p99 push latency
for SQLite (WAL, synchronous=FULL) and PostgreSQL (a throw-away server with fsync on).

    python bench/replica.py                       # 1,000 gateways, both backends
    python bench/replica.py --gateways 100 --blocks 4 --backend sqlite   # quick run
    python bench/replica.py --json                # one JSON object on the last line

Targets: >= 50,000 readings/s on SQLite, >= 30,000 readings/s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from _common import add_common_args, report  # noqa: E402

from replica.auth import READ_CHAIN  # noqa: E402
from replica.storage.base import open_storage  # noqa: E402
from replica.tokens import create_token  # noqa: E402
from tests.support.chains import encode_b64, gateway_key, make_chain  # noqa: E402
from tests.support.pgserver import PgServer, free_port  # noqa: E402

TARGETS = {"sqlite": 50_000, "postgres": 30_000}


def build_bodies(args: tuple[int, int, int, int]) -> tuple[str, list[bytes]]:
    """One gateway's chain as ready-to-send request bodies (runs in a worker process)."""
    index, blocks, readings, batch = args
    seed = f"bench-gw-{index}".encode()
    chain = make_chain(seed, blocks, readings, meter_id=f"m{index}")
    enc = encode_b64(chain)
    bodies = [json.dumps({"blocks": enc[i:i + batch]}).encode()
              for i in range(0, len(enc), batch)]
    return gateway_key(seed).hex(), bodies


def build_all(n: int, blocks: int, readings: int, batch: int) -> list[tuple[str, list[bytes]]]:
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(build_bodies, [(i, blocks, readings, batch) for i in range(n)],
                             chunksize=max(1, n // 64)))


def start_server(cfg: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "meterchain", "replica", "serve", "--config",
                             str(cfg)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"replica exited with {proc.returncode}: {err}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("replica did not come up in 60 s")


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str,
                body: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive POST; the replica always answers with Content-Length."""
    writer.write(f"POST {path} HTTP/1.1\r\nHost: replica\r\nContent-Type: application/json"
                 f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(v) for k, _, v in (ln.partition(":") for ln in lines[1:])
                  if k.lower() == "content-length")
    return status, await reader.readexactly(length)


async def push_all(port: int, gateways: list[tuple[str, list[bytes]]], connections: int
                   ) -> tuple[float, list[float], int]:
    """Every gateway pushes its batches in order, each over its own connection, all at once
    (at most ``connections`` open at a time). Returns wall seconds, latencies, refusals.

    A minimal HTTP/1.1 client keeps the load generator's CPU small next to the server's.
    """
    latencies: list[float] = []
    failures = 0
    gate = asyncio.Semaphore(connections)

    async def gateway(key: str, bodies: list[bytes]) -> None:
        nonlocal failures
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                for body in bodies:
                    t = time.perf_counter()
                    status, answer = await _post(reader, writer, f"/v1/gateways/{key}/blocks",
                                                 body)
                    latencies.append(time.perf_counter() - t)
                    if status != 200:
                        failures += 1
                        print(f"push refused: {status} {answer[:200]!r}", file=sys.stderr)
                        return
            finally:
                writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(gateway(k, b) for k, b in gateways))
    return time.perf_counter() - start, latencies, failures


def run_backend(backend: str, url: str, gateways: list[tuple[str, list[bytes]]],
                args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    storage = open_storage(url, pool_size=1)
    for i, (key, _) in enumerate(gateways):
        storage.enroll(bytes.fromhex(key), f"bench-{i}", None, 0)
    token, _ = create_token(storage, "bench", (READ_CHAIN,), 0)
    storage.close()
    port = free_port()
    cfg = tmp / f"{backend}.toml"
    cfg.write_text(f'[listen]\nhost = "127.0.0.1"\nport = {port}\nworkers = {args.workers}\n'
                   f'[storage]\nurl = "{url}"\n[limits]\nrate_per_gateway = 0\n'
                   f"max_blocks_per_batch = {max(args.batch, 1)}\n")
    proc = start_server(cfg, port)
    try:
        wall, lats, failures = asyncio.run(push_all(port, gateways, args.connections))
        listed = httpx.get(f"http://127.0.0.1:{port}/v1/gateways", timeout=60,
                           headers={"Authorization": f"Bearer {token}"}).json()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    want = args.blocks - 1
    complete = sum(1 for g in listed["gateways"] if g["height"] == want)
    if failures or complete != len(gateways):
        raise SystemExit(f"{backend}: {failures} refused pushes, {complete}/{len(gateways)} "
                         "chains complete: figures would be wrong")
    readings = len(gateways) * args.blocks * args.readings
    lats.sort()
    return {
        "backend": backend, "gateways": len(gateways), "workers": args.workers,
        "readings": readings, "pushes": len(lats), "seconds": round(wall, 2),
        "readings_per_s": round(readings / wall), "blocks_per_s": round(
            len(gateways) * args.blocks / wall),
        "p50_ms": round(statistics.median(lats) * 1000, 1),
        "p99_ms": round(lats[min(len(lats) - 1, int(len(lats) * 0.99))] * 1000, 1),
        "target": TARGETS[backend],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gateways", type=int, default=1000)
    p.add_argument("--blocks", type=int, default=10, help="blocks per gateway")
    p.add_argument("--readings", type=int, default=60, help="readings per block")
    p.add_argument("--batch", type=int, default=5, help="blocks per push")
    p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    p.add_argument("--connections", type=int, default=1000,
                   help="most gateway connections open at once")
    p.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    add_common_args(p)
    args = p.parse_args()
    t = time.perf_counter()
    gateways = build_all(args.gateways, args.blocks, args.readings, args.batch)
    build_s = time.perf_counter() - t
    rows = []
    with tempfile.TemporaryDirectory(prefix="mc-bench-replica-") as d:
        tmp = Path(d)
        if args.backend in ("sqlite", "both"):
            rows.append(run_backend("sqlite", f"sqlite:///{tmp / 'replica.db'}", gateways,
                                    args, tmp))
        if args.backend in ("postgres", "both"):
            durable = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
            with PgServer(settings=durable) as pg:
                rows.append(run_backend("postgres", pg.dsn(), gateways, args, tmp))
    summary: dict[str, Any] = {"chain_build_s": round(build_s, 1)}
    for r in rows:
        summary[f"{r['backend']}_readings_per_s"] = r["readings_per_s"]
        summary[f"{r['backend']}_meets_target"] = r["readings_per_s"] >= r["target"]
    report("replica: readings verified and stored per second", rows, summary, args.json)


if __name__ == "__main__":
    main()
