"""Replica throughput: readings verified and stored per second, many gateways at once.

Starts a real replica process (``meterchain replica serve``) on loopback, enrolls
``--gateways`` gateways, pre-builds their chains with the ledger core, then has every
gateway push its chain concurrently (``--batch`` blocks per request, in order, over a
connection of its own) and times it. Reports readings/s and p50/p99 push latency
for SQLite (WAL, synchronous=FULL) and PostgreSQL (a throw-away server with fsync on).

    python bench/replica.py                       # 1,000 gateways, both backends
    python bench/replica.py --gateways 100 --blocks 4 --backend sqlite   # quick run
    python bench/replica.py --json                # one JSON object on the last line
    python bench/replica.py --baseline-src /path/to/older/checkout   # compare in one run

Targets: >= 50,000 readings/s on SQLite, >= 30,000 readings/s on PostgreSQL.

Gateways connect from distinct loopback addresses (127.0.x.y), as real gateways do, so
per-client limits apply as in the field. With ``--baseline-src DIR`` the same load is
also pushed, in the same run, to a server started from the source tree ``DIR`` (e.g. the
release before authentication), and the ratio of the two is reported.

Then (``--slow-clients N``, default 200) a single-worker SQLite replica is attacked by N
clients that each start a 4 MiB push, send 2 MiB and stall; the server's peak RSS before
and after is reported (and for the baseline too, with ``--baseline-src``).
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
from tests.support.slowclients import peak_rss_kib, slow_clients  # noqa: E402

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


def start_server(cfg: Path, port: int, src: Path = ROOT) -> subprocess.Popen[bytes]:
    """``meterchain replica serve`` from the source tree ``src``; waits for /v1/health."""
    env = dict(os.environ, PYTHONPATH=str(src))
    proc = subprocess.Popen([sys.executable, "-m", "meterchain", "replica", "serve", "--config",
                             str(cfg)], cwd=src, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
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

    async def gateway(i: int, key: str, bodies: list[bytes]) -> None:
        nonlocal failures
        async with gate:
            source = f"127.0.{1 + i // 250 % 250}.{1 + i % 250}"  # one address per gateway
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                           local_addr=(source, 0))
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
    await asyncio.gather(*(gateway(i, k, b) for i, (k, b) in enumerate(gateways)))
    return time.perf_counter() - start, latencies, failures


def run_backend(backend: str, url: str, gateways: list[tuple[str, list[bytes]]],
                args: argparse.Namespace, tmp: Path, src: Path = ROOT,
                label: str = "current") -> dict[str, Any]:
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
    proc = start_server(cfg, port, src)
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
        "backend": backend, "code": label, "gateways": len(gateways), "workers": args.workers,
        "readings": readings, "pushes": len(lats), "seconds": round(wall, 2),
        "readings_per_s": round(readings / wall), "blocks_per_s": round(
            len(gateways) * args.blocks / wall),
        "p50_ms": round(statistics.median(lats) * 1000, 1),
        "p99_ms": round(lats[min(len(lats) - 1, int(len(lats) * 0.99))] * 1000, 1),
        "target": TARGETS[backend],
    }


def slow_client_rss(tmp: Path, args: argparse.Namespace, src: Path, label: str
                    ) -> dict[str, Any]:
    """Peak RSS of a single-worker SQLite replica before and under the slow clients."""
    url = f"sqlite:///{tmp / f'slow-{label}.db'}"
    key = gateway_key(b"bench-slow")
    storage = open_storage(url, pool_size=1)
    storage.enroll(key, "slow", None, 0)
    storage.close()
    port = free_port()
    cfg = tmp / f"slow-{label}.toml"
    cfg.write_text(f'[listen]\nhost = "127.0.0.1"\nport = {port}\nworkers = 1\n'
                   f'[storage]\nurl = "{url}"\n[limits]\nrate_per_gateway = 0\n')
    proc = start_server(cfg, port, src)
    mib = 1024 * 1024
    try:
        body = json.dumps({"blocks": encode_b64(make_chain(b"bench-slow", 2, 30))}).encode()
        httpx.post(f"http://127.0.0.1:{port}/v1/gateways/{key.hex()}/blocks", content=body,
                   headers={"content-type": "application/json"}, timeout=30)
        time.sleep(0.5)
        before = peak_rss_kib(proc.pid)
        t = time.perf_counter()
        outcomes, during = asyncio.run(slow_clients(
            port, f"/v1/gateways/{key.hex()}/blocks", args.slow_clients, 4 * mib, 2 * mib,
            args.slow_hold, proc.pid))
        after = peak_rss_kib(proc.pid)
        seconds = time.perf_counter() - t
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"code": label, "clients": args.slow_clients, "peak_rss_before_mib":
            round(before / 1024, 1), "peak_rss_after_mib": round(after / 1024, 1),
            "peak_rss_growth_mib": round((after - before) / 1024, 1),
            "outcomes": " ".join(f"{k}:{v}" for k, v in sorted(outcomes.items())),
            "seconds": round(seconds, 1)}


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
    p.add_argument("--baseline-src", type=Path, default=None, metavar="DIR",
                   help="also run against the replica of this source tree (same run)")
    p.add_argument("--slow-clients", type=int, default=200,
                   help="slow clients for the peak-RSS phase (0 to skip)")
    p.add_argument("--slow-hold", type=float, default=20.0,
                   help="seconds each slow client holds its connection at most")
    add_common_args(p)
    args = p.parse_args()
    t = time.perf_counter()
    gateways = build_all(args.gateways, args.blocks, args.readings, args.batch)
    build_s = time.perf_counter() - t
    codes = [(ROOT, "current")]
    if args.baseline_src is not None:
        codes.insert(0, (args.baseline_src.resolve(), "baseline"))
    rows = []
    slow_rows = []
    with tempfile.TemporaryDirectory(prefix="mc-bench-replica-") as d:
        tmp = Path(d)
        for src, label in codes:
            if args.backend in ("sqlite", "both"):
                rows.append(run_backend("sqlite", f"sqlite:///{tmp / f'{label}.db'}",
                                        gateways, args, tmp, src, label))
        if args.backend in ("postgres", "both"):
            durable = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
            with PgServer(settings=durable) as pg:
                for src, label in codes:
                    rows.append(run_backend("postgres", pg.fresh_schema_dsn(), gateways, args,
                                            tmp, src, label))
        if args.slow_clients > 0:
            for src, label in codes:
                slow_rows.append(slow_client_rss(tmp, args, src, label))
    summary: dict[str, Any] = {"chain_build_s": round(build_s, 1)}
    for r in rows:
        if r["code"] != "current":
            continue
        summary[f"{r['backend']}_readings_per_s"] = r["readings_per_s"]
        summary[f"{r['backend']}_meets_target"] = r["readings_per_s"] >= r["target"]
        base = [b for b in rows if b["backend"] == r["backend"] and b["code"] == "baseline"]
        if base:
            summary[f"{r['backend']}_vs_baseline"] = round(
                r["readings_per_s"] / base[0]["readings_per_s"], 3)
    for r in slow_rows:
        summary[f"slow_clients_peak_rss_growth_mib_{r['code']}"] = r["peak_rss_growth_mib"]
    if slow_rows:
        report(f"replica: peak RSS under {args.slow_clients} slow clients (4 MiB pushes, "
               "2 MiB sent, then stalled)", slow_rows, {}, False)
    report("replica: readings verified and stored per second", rows, summary, args.json)


if __name__ == "__main__":
    main()
