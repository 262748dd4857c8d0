"""Backlog catch-up: forward a stored backlog of readings to a local replica over loopback.

A gateway that was offline for a long time holds a backlog; when the network returns,
the forwarder sends it in byte-bounded batches to the replica, which verifies every
block (signature, Merkle root of every reading) and stores it. This measures that
end to end: the agent's forwarder (this process) against the real replica server
(``replica.app`` under uvicorn, SQLite storage, a child process) on 127.0.0.1.

Target (issue 5): >= 30,000 readings/s end to end for a 1 M-reading backlog.

    python bench/forward.py                  # 1 M readings, batch bounds 256 KiB .. 4 MiB
    python bench/forward.py --readings 200000 --batch-kib 1024 --json
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import add_common_args, report  # noqa: E402

import keyfiles as keys  # noqa: E402
from agent.pipeline.forwarder import Forwarder, ForwarderOptions  # noqa: E402
from agent.storage.state import StateDB  # noqa: E402
from agent.storage.store import BlockStore, StoreOptions  # noqa: E402
from meterchain.demo import SyntheticMeters, seal_chain  # noqa: E402
from tests.support.replicaproc import ReplicaProcess  # noqa: E402


def build_backlog(directory: Path, readings: int, per_block: int) -> tuple[bytes, int, float]:
    """Seal ``readings`` synthetic readings into a store; return (public key, blocks, s)."""
    keys.generate_gateway_key(directory)
    seed = keys.load_signing_key(directory / keys.GATEWAY_KEY)
    public = keys.public_from_seed(seed)
    meters = SyntheticMeters(max(1, per_block // 4 // 4), seed=1)
    intervals = max(1, per_block // meters.readings_per_interval)
    per = intervals * meters.readings_per_interval
    n_blocks = max(1, readings // per)
    t0 = time.perf_counter()
    with BlockStore.open(directory / "ledger", options=StoreOptions(fsync=False)) as store:
        batch = []
        for block in seal_chain(seed, meters, n_blocks, intervals_per_block=intervals,
                                interval_ms=60_000):
            batch.append(block)
            if len(batch) == 64:
                store.append_many(batch)
                batch = []
        if batch:
            store.append_many(batch)
    return public, n_blocks, time.perf_counter() - t0


def catch_up(store: BlockStore, state: StateDB, url: str, public: bytes, name: str,
             batch_bytes: int) -> tuple[float, dict[str, object]]:
    fw = Forwarder(name, url, store, state, gateway_key=public,
                   options=ForwarderOptions(batch_max_bytes=batch_bytes, timeout_s=60.0,
                                            idle_poll_s=0.05))

    async def main() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(fw.run(stop))
        t0 = time.perf_counter()
        while fw.acked_height < store.height:
            if fw.status["state"] in ("discrepancy", "refused"):
                raise SystemExit(f"forwarding failed: {fw.status}")
            await asyncio.sleep(0.005)
        took = time.perf_counter() - t0
        stop.set()
        await task
        return took

    return asyncio.run(main()), fw.status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000,
                        help="backlog size in readings (default 1,000,000)")
    parser.add_argument("--per-block", type=int, default=1000,
                        help="readings per block (the sealing policy's max_readings)")
    parser.add_argument("--batch-kib", type=int, action="append",
                        help="push body bound in KiB (repeatable; default 256, 1024, 4096)")
    add_common_args(parser)
    args = parser.parse_args()
    bounds = args.batch_kib or [256, 1024, 4096]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mc-bench-forward-") as tmp:
        d = Path(tmp)
        public, n_blocks, build_s = build_backlog(d / "gw", args.readings, args.per_block)
        store = BlockStore.open(d / "gw" / "ledger")
        state = StateDB(d / "gw" / "state.json")
        total = sum(store.get(h).header.reading_count
                    for h in range(store.height + 1))
        try:
            for i, kib in enumerate(bounds):
                rep = ReplicaProcess(d / f"rep{i}", enroll=[public]).start()
                try:
                    took, st = catch_up(store, state, rep.url, public, f"bench{i}",
                                        kib * 1024)
                    assert len(rep.records(public)) == n_blocks
                finally:
                    rep.stop()
                rows.append({"batch_kib": kib, "blocks": n_blocks, "readings": total,
                             "seconds": round(took, 2),
                             "readings_per_s": round(total / took),
                             "mb_per_s": round(int(st["sent_bytes"]) / took / 1e6, 1)})  # type: ignore[call-overload]
        finally:
            store.close()
            state.close()
    best = max(r["readings_per_s"] for r in rows)
    report("backlog catch-up to a local replica (loopback, real replica, SQLite)", rows,
           {"readings": total, "readings_per_block": total // n_blocks,
            "build_backlog_s": round(build_s, 1), "best_readings_per_s": best,
            "target_readings_per_s": 30_000, "meets_target": best >= 30_000}, args.json)


if __name__ == "__main__":
    main()
