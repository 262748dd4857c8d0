"""Meter data at the replica: index build, a month of intervals, one day over HTTP.

    python bench/intervals.py [--points 1000] [--days 31] [--per-gateway 10] [--json]

Builds a replica (SQLite) holding ``--points`` metering points on ``points /
per-gateway`` gateways, each point's import register read every 5 minutes for
``--days`` days (1,000 x 31 days: about 8.9 M readings), sealed into signed one-hour
blocks and stored as a push would store them (setup, timed apart). Then measures:

- index build: ``reindex`` from the stored blocks (decode, check each payload against
  its header's Merkle root, write the rows); target >= 100,000 readings/s on SQLite;
- 15-minute intervals for every point over the month, through the replica's own query
  path (registry -> channels -> SQL -> engine, validation and traces included);
  target <= 30 s for 1,000 points;
- the same computation with pandas on the same rows in the same run, as a data
  engineer would write it (``bench/_intervals_engine.py``'s reference); target: the
  engine at least as fast;
- one point's day over HTTP (uvicorn on loopback, ``GET /v1/meterdata/intervals``):
  p50 and p95 latency; target p50 <= 20 ms.

A calibration (SHA-256 of 200 B per second, measured in the same run) is printed beside
the figures, since machine speed varies by about 3x. ``--points 20 --days 2`` is the
smoke size (tests/test_benches.py).
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nacl.signing  # noqa: E402
from _common import add_common_args, report  # noqa: E402
from _intervals_engine import calibration, pandas_rows  # noqa: E402

from ledger import PayloadEncoding, Reading, seal_block  # noqa: E402
from replica.meterdata.indexer import reindex  # noqa: E402
from replica.meterdata.query import MeterData, Target, parse_request  # noqa: E402
from replica.meterdata.registry import Assignment, make_point  # noqa: E402
from replica.storage.base import StoredBlock  # noqa: E402
from replica.storage.sqlite import SqliteStorage  # noqa: E402

MIN = 60_000
CADENCE = 5 * MIN
T0 = 1_764_543_600_000  # 2025-12-01T00:00+01:00 (Europe/Vienna)
BLOCK_MS = 3_600_000  # one block per gateway-hour


def _seed(g: int) -> bytes:
    return (b"bench-intervals-%06d" % g).ljust(32, b".")


def build(storage: SqliteStorage, points: int, days: int, per_gateway: int) -> tuple[int, int]:
    """Seal and store every gateway's chain; return (gateways, readings)."""
    gateways = -(-points // per_gateway)
    n = days * 288 + 5  # from 10 minutes before the first day to 10 after the last
    start = T0 - 2 * CADENCE
    readings = 0
    for g in range(gateways):
        sk = nacl.signing.SigningKey(_seed(g))
        key = bytes(sk.verify_key)
        storage.enroll(key, f"gw-{g:04d}", "bench", 1)
        meters = [f"m{p:05d}" for p in range(g * per_gateway, min(points, (g + 1) * per_gateway))]
        wh = {m: 1_000_000 + i * 1_000 for i, m in enumerate(meters)}
        header = None
        batch: list[StoredBlock] = []
        k = 0
        while k < n:
            t_block = start + k * CADENCE
            rs = []
            while k < n and start + k * CADENCE < t_block + BLOCK_MS:
                for j, m in enumerate(meters):
                    p = g * per_gateway + j
                    wh[m] += 5 + (k * 7919 + p * 104729) % 40
                    if 400 + p % 50 <= k < 408 + p % 50:
                        continue  # a 40-minute gap per point
                    ts = start + k * CADENCE + (k * 2654435761 + p) % 4001
                    rs.append(Reading(m, "1-0:1.8.0", wh[m], 0, "Wh", ts))
                k += 1
            t0 = max(min(r.timestamp_ms for r in rs), header.time_end_ms if header else 0)
            t1 = max(r.timestamp_ms for r in rs)
            block = seal_block(sk, header, rs, [bytes(16)] * len(rs), t0, t1)
            header = block.header
            readings += len(rs)
            batch.append(StoredBlock(block.height, block.hash, t0, t1, len(rs),
                                     block.header.payload_encoding == PayloadEncoding.SEALED,
                                     block.encode()))
            if len(batch) == 200:
                storage.append(key, batch, batch[0].height - 1, 2)
                batch = []
        if batch:
            storage.append(key, batch, batch[0].height - 1, 2)
    return gateways, readings


def register(md: MeterData, points: int, per_gateway: int) -> None:
    """One metering point per meter (grid connections of 100 households per site)."""
    gws = md.storage.gateways()
    by_name = {g.name: g for g in gws}
    for p in range(points):
        pid = f"hh-{p:05d}"
        md.store.put_point(make_point(pid, "grid", member=f"member-{p:05d}"))
        gw = by_name[f"gw-{p // per_gateway:04d}"]
        md.store.replace_assignments(pid, [Assignment(pid, gw.key, f"m{p:05d}", 0, None)])


def month_targets(md: MeterData, req: Any) -> list[Target]:
    out: list[Target] = []
    for g in md.storage.gateways():
        out.extend(md.targets(gateway=g.key.hex(), start_ms=req.start_ms, end_ms=req.end_ms))
    return out


def http_day(md: MeterData, storage: SqliteStorage, points: int, days: int,
             requests: int) -> dict[str, float]:
    """Latency of one point's day over HTTP (uvicorn on loopback, one client)."""
    import httpx
    import uvicorn

    from replica.app import create_app
    from replica.config import Limits, ReplicaConfig
    from tests.support.pgserver import free_port
    from tests.support.tokens import auth_header, install_test_token

    port = free_port()
    app = create_app(ReplicaConfig(limits=Limits(rate_per_gateway=0.0)), storage)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    lat = []
    token = install_test_token(storage)  # the routes need scope read:readings
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers=auth_header(token)) as c:
            for i in range(requests + 3):
                p = (i * 7919) % points
                day = f"2025-12-{1 + (i * 13) % days:02d}"
                t = time.perf_counter()
                r = c.get("/v1/meterdata/intervals",
                          params={"point": f"hh-{p:05d}", "from": day, "to": day})
                dt = time.perf_counter() - t
                if r.status_code != 200 or len(r.json()["series"][0]["intervals"]) != 96:
                    raise RuntimeError(f"bad answer: {r.status_code} {r.text[:200]}")
                if i >= 3:  # the first requests warm the connection and caches
                    lat.append(dt * 1000)
    finally:
        server.should_exit = True
        thread.join(10)
    lat.sort()
    return {"p50_ms": statistics.median(lat), "p95_ms": lat[int(0.95 * (len(lat) - 1))],
            "requests": len(lat)}


def _progress(row: dict[str, Any]) -> None:
    print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in row.items()), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=1000, help="metering points (default 1000)")
    ap.add_argument("--days", type=int, default=31, help="days of readings (default 31)")
    ap.add_argument("--per-gateway", type=int, default=10, help="meters per gateway")
    ap.add_argument("--http-requests", type=int, default=50, help="HTTP requests timed")
    ap.add_argument("--no-pandas", action="store_true", help="skip the pandas reference")
    ap.add_argument("--workdir", help="directory for the database (default: a temp dir)")
    add_common_args(ap)
    args = ap.parse_args(argv)
    if not 1 <= args.days <= 31:
        ap.error("--days must be 1..31 (December 2025)")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="mc-bench-intervals-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> int:
    cal = calibration()
    storage = SqliteStorage(work / "replica.db")
    md = MeterData(storage)
    t = time.perf_counter()
    gateways, readings = build(storage, args.points, args.days, args.per_gateway)
    setup_s = time.perf_counter() - t
    _progress({"step": "setup (seal and store)", "readings": readings, "wall_s": setup_s})
    register(md, args.points, args.per_gateway)
    rows: list[dict[str, Any]] = []

    gc.collect()
    t = time.perf_counter()
    indexed = reindex(storage, md.store, None)
    index_s = time.perf_counter() - t
    if indexed != readings:
        raise RuntimeError(f"indexed {indexed} readings, stored {readings}")
    rows.append({"step": "index build (reindex)", "readings": indexed, "wall_s": index_s,
                 "readings_per_s": indexed / index_s})
    _progress(rows[-1])

    req = parse_request("2025-12-01", f"2025-12-{args.days:02d}", "15m", "Europe/Vienna")
    targets = month_targets(md, req)
    t = time.perf_counter()
    n_int = measured = 0
    for target in targets:
        for s in md.series(target, req, directions=("import",)):
            n_int += len(s.intervals)
            measured += sum(1 for iv in s.intervals if iv.quality.value == "measured")
    month_s = time.perf_counter() - t
    rows.append({"step": "15-min intervals, all points, month (SQL + engine)",
                 "readings": indexed, "intervals": n_int, "measured": measured,
                 "wall_s": month_s, "readings_per_s": indexed / month_s})
    _progress(rows[-1])

    # the same rows, fetched once, through the engine alone and through pandas
    fetch_s = engine_s = pandas_s = 0.0
    pandas_measured = 0
    engine_measured = 0
    have_pandas = not args.no_pandas
    if have_pandas:
        try:
            import pandas  # noqa: F401
        except ImportError:
            have_pandas = False
    from _intervals_engine import compare_values, engine_rows

    check: dict[str, int] = {}

    for target in targets:
        src = target.sources[0]
        (ch,) = md.store.channels(src.gateway.key, src.meter_id)
        gw = src.gateway.key.hex()
        t = time.perf_counter()
        lo, hi = req.start_ms - 2 * CADENCE, req.end_ms + 2 * CADENCE
        pts = md.store.engine_rows(ch.channel, gw, lo, hi)
        fetch_s += time.perf_counter() - t
        t = time.perf_counter()
        engine_measured += engine_rows(pts, req.start_ms, req.end_ms)[1]
        engine_s += time.perf_counter() - t
        if have_pandas:
            t = time.perf_counter()
            pandas_measured += pandas_rows(pts, req.start_ms, req.end_ms)[1]
            pandas_s += time.perf_counter() - t
            # untimed: the two agree interval by interval, not only in counts
            for k, v in compare_values(pts, req.start_ms, req.end_ms).items():
                check[k] = check.get(k, 0) + v
    rows.append({"step": "  the same rows fetched again (SQL)", "wall_s": fetch_s})
    rows.append({"step": "  same rows: meterchain engine", "intervals": n_int,
                 "measured": engine_measured, "wall_s": engine_s,
                 "readings_per_s": indexed / engine_s})
    if have_pandas:
        rows.append({"step": "  same rows: pandas reference", "intervals": n_int,
                     "measured": pandas_measured, "wall_s": pandas_s,
                     "readings_per_s": indexed / pandas_s})
    else:
        rows.append({"step": "  same rows: pandas reference (pandas not installed)"})

    http = http_day(md, storage, args.points, args.days, args.http_requests)
    cal_end = calibration()  # the machine's speed can change during a long run
    rows.append({"step": "one point's day over HTTP", "requests": http["requests"],
                 "p50_ms": http["p50_ms"], "p95_ms": http["p95_ms"]})
    storage.close()

    summary: dict[str, Any] = {
        "points": args.points, "days": args.days, "gateways": gateways, "readings": readings,
        "setup_s": setup_s,
        "index_readings_per_s": indexed / index_s,
        "month_intervals_s": month_s,
        "month_intervals_s_per_1000_points": month_s * 1000 / args.points,
        "engine_only_s": engine_s,
        "http_day_p50_ms": http["p50_ms"], "http_day_p95_ms": http["p95_ms"],
        **cal,
        **{f"{k}_at_end": v for k, v in cal_end.items()},
    }
    if have_pandas:
        summary["pandas_s"] = pandas_s
        summary["engine_speedup_vs_pandas"] = pandas_s / max(engine_s, 1e-9)
        summary["same_measured_count"] = engine_measured == pandas_measured
        summary["values_compared"] = check.get("compared", 0)
        summary["values_differing"] = check.get("differing", 0)
        summary["estimated_not_compared"] = check.get("estimated_skipped", 0)
        summary["same_values"] = (check.get("differing", 0) == 0
                                  and check.get("measured_differing", 0) == 0)
    report(f"meter data: {args.points} points x {args.days} days, 5-minute readings", rows,
           summary, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
