"""Ingest: readings signed and committed per second, and what it costs the disk.

    python bench/ingest.py [--blocks 3000] [--baseline-readings 20000]
                           [--big-readings 10000000] [--dir DIR] [--quick] [--json]

1. Ingest (one core): blocks of 64 readings (16 meters x 4 quantities, prepared before
   the clock starts) are sealed (random salts, canonical encoding, Merkle root, Ed25519
   signature) and appended to a ``BlockStore`` with one fdatasync per block. Timed: seal
   + append. Target >= 100,000 readings/s. Over the same run: disk write amplification =
   bytes this process caused to be written (``/proc/self/io`` write_bytes) / bytes the
   store kept (target <= 1.2), with the record bytes and page padding shown beside it.
   Beside it, the agent's own commit path (``Sealer.run`` with the default config, as
   the daemon runs it): each block is written as soon as it is sealed
   (``BlockStore.submit``) while the store's sync thread fdatasyncs whatever has been
   written, waiting ``group_commit_delay_s`` (2 ms) for more to join each sync (group
   commit); no block counts as committed before an fdatasync covering it has returned.
2. Baseline: the same workload with TinyDB as the ledger (one document per block, the
   readings as JSON objects; TinyDB's JSONStorage fsyncs each write), filled to
   ``--baseline-readings`` readings (timed whole: seal + insert), then 16 more blocks
   whose inserts alone are timed: TinyDB's rate *at* that many readings (as "append time
   at 10 M readings" means the cost once the store holds 10 M). Target: the store
   >= 200x faster. Each mode is compared with both TinyDB rates (the insert-only rate
   credits TinyDB with sealing overlapped). "One block at a time" is the strict
   like-for-like comparison (one durable write per block, nothing overlapped, for
   both). Group commit is the agent's real path and part of the store's design: a
   TinyDB ledger could put several blocks in one insert too, but every insert would
   still rewrite the whole file.
   The ceiling: one 4 KiB page written and fdatasynced, in the same directory -- no
   store with one fdatasync per block commits faster than one block per that time.
3. Scaling: append time per block (sealing not timed; append + fdatasync timed) on a
   store holding ~10 k readings and on one filled to ``--big-readings`` readings.
   The fill is NOT timed and uses pre-built blocks: one 64-reading payload repeated,
   each header really signed and linked, appended 512 per fsync. Rounds alternate
   between the two stores so drift on a shared machine hits both. Target: ratio <= 1.2.
   Opening the big store and random reads by height are timed too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nacl.signing  # noqa: E402
from _common import add_common_args, report  # noqa: E402
from tinydb import TinyDB  # noqa: E402

import ledger  # noqa: E402
from agent.pipeline.sealer import Sealer  # noqa: E402
from agent.service.config import SealingConfig  # noqa: E402
from agent.storage.store import BlockStore  # noqa: E402
from meterchain.demo import SyntheticMeters  # noqa: E402

SEED = bytes(range(32))
KEY = nacl.signing.SigningKey(SEED)  # derived once, as the agent's sealer does
T0 = 1_767_225_600_000
PER_BLOCK = 64


def write_bytes() -> int:
    """Bytes this process caused to be sent to storage (Linux /proc/self/io)."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no write_bytes")


def salts_for(n: int) -> list[bytes]:
    """``n`` random 16-byte salts from one getrandom call."""
    buf = os.urandom(16 * n)
    return [buf[i : i + 16] for i in range(0, 16 * n, 16)]


def reading_pool(n: int) -> list[list[ledger.Reading]]:
    meters = SyntheticMeters(16, seed=3, prefix="meter")
    return [meters.read_all(T0 + i * 1000) for i in range(n)]


def ingest(directory: Path, blocks: int) -> dict[str, float]:
    pool = reading_pool(64)
    prev: ledger.Header | None = None
    record_bytes = 0
    with BlockStore.open(directory) as store:
        kept0 = store.disk_usage()
        w0 = write_bytes()
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(blocks):
            readings = pool[i % len(pool)]
            salts = salts_for(len(readings))
            block = ledger.seal_block(KEY, prev, readings, salts, T0 + i, T0 + i)
            store.append(block)
            prev = block.header
            record_bytes += len(block.payload) + 262
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        written = write_bytes() - w0
        kept = store.disk_usage() - kept0
    n = blocks * PER_BLOCK
    return {"readings": n, "wall_s": wall, "readings_per_s": n / wall,
            "cpu_readings_per_s": n / cpu, "written": written, "kept": kept,
            "record_bytes": record_bytes + 8 * blocks}


def ingest_agent(directory: Path, blocks: int, in_flight: int) -> dict[str, float]:
    """The agent's own commit path: ``Sealer.run`` as the daemon runs it.

    The readings are queued before the clock starts (``max_readings`` = 64, so every 64
    make a block due at once). The sealer writes each block as soon as it is sealed
    (``BlockStore.submit``) and the store's sync thread fdatasyncs while writes arrive;
    up to ``in_flight`` blocks wait for the disk at once, and one fdatasync covers all
    written before it started (group commit). With ``in_flight`` = 1 every block gets
    its own write and fdatasync, one after the other. Timed until the last block is
    reported committed, i.e. until an fdatasync covering it has returned.
    """
    pool = reading_pool(64)
    n = blocks * PER_BLOCK
    cfg = SealingConfig(interval_s=3600.0, max_readings=PER_BLOCK,
                        max_pending_readings=max(100, n), max_blocks_in_flight=in_flight)
    with BlockStore.open(directory) as store:
        stop = asyncio.Event()
        sealer = Sealer(cfg, store, SEED, on_commit=lambda _b: (
            sealer.readings_committed >= n and stop.set()))
        for i in range(blocks):
            sealer.add(pool[i % len(pool)], T0 + i)

        async def run() -> None:
            await sealer.run(stop)

        kept0, w0 = store.disk_usage(), write_bytes()
        c0, t0 = time.process_time(), time.perf_counter()
        asyncio.run(run())
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        written, kept = write_bytes() - w0, store.disk_usage() - kept0
        assert store.height == blocks - 1 and sealer.pending == 0
    return {"readings_per_s": n / wall, "cpu_readings_per_s": n / cpu,
            "blocks_per_sync": blocks / max(1, store.syncs), "amplification": written / kept}


def fdatasync_floor(directory: Path, n: int = 400) -> float:
    """Median seconds to write one 4 KiB page to the end of a file and fdatasync it.

    This is what one durable append costs the disk alone, with no sealing, framing or
    Python on top: with one fdatasync per block no store can commit blocks faster than
    one per this time (group commit shares it between blocks)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / "floor", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    page = bytes(4096)
    times = []
    try:
        for _ in range(n):
            s = time.perf_counter()
            os.write(fd, page)
            os.fdatasync(fd)
            times.append(time.perf_counter() - s)
    finally:
        os.close(fd)
    return statistics.median(times)


def tinydb_baseline(path: Path, readings: int, probe_blocks: int = 16) -> dict[str, float]:
    """TinyDB as the ledger: one document per block, each insert its own durable write.

    Blocks are inserted until the database holds ``readings`` readings (the whole run is
    timed: sealing + insert), then ``probe_blocks`` more are inserted and timed alone: the
    cost of appending *at* ``readings``. Only the insert is counted there, as if sealing
    were overlapped with the write, as the agent's group commit overlaps it.
    """
    pool = reading_pool(64)
    blocks = max(1, -(-readings // PER_BLOCK))
    prev: ledger.Header | None = None
    db = TinyDB(path)
    inserts = []
    t0 = time.perf_counter()
    wall = 0.0
    for i in range(blocks + probe_blocks):
        rs = pool[i % len(pool)]
        salts = salts_for(len(rs))
        block = ledger.seal_block(KEY, prev, rs, salts, T0 + i, T0 + i)
        h = block.header
        doc = {
            "height": h.height, "prev_hash": h.prev_hash.hex(), "hash": block.hash.hex(),
            "merkle_root": h.merkle_root.hex(), "signature": block.signature.hex(),
            "time_start_ms": h.time_start_ms, "time_end_ms": h.time_end_ms,
            "readings": [{"meter": r.meter_id, "obis": r.obis, "value": r.value,
                          "exponent": r.exponent, "unit": r.unit, "ts": r.timestamp_ms,
                          "salt": salt.hex()} for r, salt in zip(rs, salts, strict=True)],
        }
        s = time.perf_counter()
        db.insert(doc)
        inserts.append(time.perf_counter() - s)
        prev = h
        if i == blocks - 1:
            wall = time.perf_counter() - t0
    db.close()
    probe = inserts[blocks:]
    return {"readings": blocks * PER_BLOCK, "wall_s": wall,
            "readings_per_s": blocks * PER_BLOCK / wall,
            "at_readings_per_s": len(probe) * PER_BLOCK / sum(probe),
            "at_ms_per_block": 1000 * statistics.median(probe)}


def filler(store: BlockStore, target_readings: int, batch: int = 512) -> float:
    """Append pre-built, really signed blocks (one repeated payload) up to the target."""
    readings = reading_pool(1)[0]
    salts = [bytes(16)] * len(readings)
    model = ledger.seal_block(SEED, None, readings, salts, T0, T0)
    sk = nacl.signing.SigningKey(SEED)
    head = store.head
    t0 = time.perf_counter()
    while (store.height + 1) * PER_BLOCK < target_readings:
        out = []
        want = -(-(target_readings - (store.height + 1) * PER_BLOCK) // PER_BLOCK)
        for _ in range(min(batch, want)):
            height = 0 if head is None else head.height + 1
            t = T0 if head is None else head.header.time_end_ms + 1
            header = ledger.Header(
                model.header.version, model.header.payload_encoding, model.header.gateway_key,
                height, ledger.ZERO_HASH if head is None else head.hash, t, t,
                model.header.reading_count, model.header.merkle_root, model.header.payload_hash,
                model.header.recipient_key)
            enc = header.encode()
            bhash = ledger.header_hash(enc)
            out.append(ledger.Block(header, sk.sign(bhash).signature, model.payload))
            head = ledger.ChainHead(header, bhash)
        store.append_many(out)
    return time.perf_counter() - t0


def probe(store: BlockStore, pool: list[list[ledger.Reading]], n: int) -> list[float]:
    """Seal (untimed) and append (timed, with fdatasync) ``n`` blocks; append times."""
    out = []
    for i in range(n):
        head = store.head
        assert head is not None
        rs = pool[i % len(pool)]
        t = head.header.time_end_ms + 1
        block = ledger.seal_block(SEED, head.header, rs, [bytes(16)] * len(rs), t, t)
        s = time.perf_counter()
        store.append(block)
        out.append(time.perf_counter() - s)
    return out


def scaling(directory: Path, small: int, big: int, rounds: int, per_round: int
            ) -> dict[str, float]:
    pool = reading_pool(16)
    with BlockStore.open(directory / "small") as s_small:
        filler(s_small, small)
        with BlockStore.open(directory / "big") as s_big:
            fill_s = filler(s_big, big)
            big_height = s_big.height
        t = time.perf_counter()
        s_big = BlockStore.open(directory / "big")
        open_s = time.perf_counter() - t
        rng = random.Random(1)
        heights = [rng.randrange(0, big_height + 1) for _ in range(2000)]
        t = time.perf_counter()
        for h in heights:
            s_big.get_record(h)
        get_us = (time.perf_counter() - t) / len(heights) * 1e6
        small_at, big_at = (s_small.height + 1) * PER_BLOCK, (s_big.height + 1) * PER_BLOCK
        small_t: list[float] = []
        big_t: list[float] = []
        for _ in range(rounds):
            small_t += probe(s_small, pool, per_round)
            big_t += probe(s_big, pool, per_round)
        result = {
            "small_readings": small_at,
            "big_readings": big_at,
            "small_append_ms": statistics.median(small_t) * 1e3,
            "big_append_ms": statistics.median(big_t) * 1e3,
            "fill_s": fill_s, "open_big_ms": open_s * 1e3, "get_us": get_us,
            "big_disk_bytes": s_big.disk_usage(), "big_segments": s_big.segment_count,
        }
        s_big.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocks", type=int, default=3000, help="blocks in the ingest run")
    ap.add_argument("--baseline-readings", type=int, default=20_000)
    ap.add_argument("--small-readings", type=int, default=10_000)
    ap.add_argument("--big-readings", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=12, help="alternating probe rounds")
    ap.add_argument("--per-round", type=int, default=50, help="appends per probe round")
    ap.add_argument("--dir", type=Path, help="where to put the ledgers (a real disk; "
                    "default: a temporary directory, removed afterwards)")
    ap.add_argument("--quick", action="store_true",
                    help="small run: 500 blocks, 5,000 baseline, 1 M big readings")
    add_common_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.blocks, args.baseline_readings, args.big_readings = 500, 5000, 1_000_000
    base = Path(tempfile.mkdtemp(prefix="mc-bench-ingest-", dir=args.dir))
    try:
        ing = ingest(base / "ingest", args.blocks)
        group = ingest_agent(base / "ingest-group", args.blocks,
                             in_flight=SealingConfig().max_blocks_in_flight)
        tdb = tinydb_baseline(base / "tinydb.json", args.baseline_readings)
        floor_s = fdatasync_floor(base / "floor")
        sc = scaling(base, args.small_readings, args.big_readings, args.rounds, args.per_round)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    at = tdb["at_readings_per_s"]
    avg = tdb["readings_per_s"]
    modes = (("one block at a time", "", ing), ("agent, group commit", "group_commit_", group))
    amp = ing["written"] / ing["kept"]
    ratio = sc["big_append_ms"] / sc["small_append_ms"]
    n_base = f"{tdb['readings']:,}"
    rows = [
        {"measure": "ingest: seal + append, fdatasync per block", "value":
         round(ing["readings_per_s"]), "unit": "readings/s", "target": ">= 100,000"},
        {"measure": "  same, per CPU second (shared machine)",
         "value": round(ing["cpu_readings_per_s"]), "unit": "readings/s", "target": ""},
        {"measure": "agent's sealer, group commit (Sealer.run, defaults)", "value":
         round(group["readings_per_s"]), "unit": "readings/s", "target": ">= 100,000"},
        {"measure": "  same, per CPU second (both threads)",
         "value": round(group["cpu_readings_per_s"]), "unit": "readings/s", "target": ""},
        {"measure": "  blocks per fdatasync (mean)", "value":
         round(group["blocks_per_sync"], 2), "unit": "blocks", "target": ""},
        {"measure": f"TinyDB-as-ledger, appending at {n_base} readings (insert only)",
         "value": round(at), "unit": "readings/s", "target": ""},
        {"measure": f"  TinyDB per block at {n_base} readings (median)",
         "value": round(tdb["at_ms_per_block"], 1), "unit": "ms", "target": ""},
        {"measure": f"TinyDB-as-ledger, 0..{n_base} readings (seal + insert)",
         "value": round(avg), "unit": "readings/s", "target": ""},
    ]
    ceiling = PER_BLOCK / floor_s
    rows += [
        {"measure": "write + fdatasync of one 4 KiB page (median)", "value":
         round(floor_s * 1e3, 3), "unit": "ms", "target": ""},
        {"measure": "  ceiling with one fdatasync per 64-reading block", "value":
         round(ceiling), "unit": "readings/s", "target": ""},
        {"measure": f"  ceiling / TinyDB at {n_base} readings", "value":
         round(ceiling / at, 1), "unit": "x", "target": ""},
        {"measure": f"  ceiling / TinyDB's 0..{n_base} average", "value":
         round(ceiling / avg, 1), "unit": "x", "target": ""},
    ]
    speedups = {}
    for name, key, res in modes:
        speedups[f"{key}speedup_vs_tinydb_at"] = round(res["readings_per_s"] / at, 1)
        speedups[f"{key}speedup_vs_tinydb"] = round(res["readings_per_s"] / avg, 1)
        rows.append({"measure": f"speed-up at {n_base} readings, {name}",
                     "value": speedups[f"{key}speedup_vs_tinydb_at"], "unit": "x",
                     "target": ">= 200"})
    for name, key, _ in modes:
        rows.append({"measure": f"  vs TinyDB's 0..{n_base} average, {name}",
                     "value": speedups[f"{key}speedup_vs_tinydb"], "unit": "x", "target": ""})
    rows += [
        {"measure": "write amplification: write_bytes / bytes kept", "value": round(amp, 3),
         "unit": "ratio", "target": "<= 1.2"},
        {"measure": "  same, agent's group commit", "value":
         round(group["amplification"], 3), "unit": "ratio", "target": "<= 1.2"},
        {"measure": "  write_bytes / framed record bytes", "value":
         round(ing["written"] / ing["record_bytes"], 3), "unit": "ratio", "target": ""},
        {"measure": "  page padding in bytes kept", "value":
         round(100 * (1 - ing["record_bytes"] / ing["kept"]), 1), "unit": "%", "target": ""},
        {"measure": f"append from {sc['small_readings']:,} readings (median)",
         "value": round(sc["small_append_ms"], 3), "unit": "ms/block", "target": ""},
        {"measure": f"append from {sc['big_readings']:,} readings (median)",
         "value": round(sc["big_append_ms"], 3), "unit": "ms/block", "target": ""},
        {"measure": "append time big / small", "value": round(ratio, 3), "unit": "ratio",
         "target": "<= 1.2"},
        {"measure": "open the big store", "value": round(sc["open_big_ms"], 2), "unit": "ms",
         "target": ""},
        {"measure": "get_record(random height) in the big store", "value":
         round(sc["get_us"], 1), "unit": "us", "target": ""},
        {"measure": f"fill to {sc['big_readings']:,} (pre-built blocks, untimed)",
         "value": round(sc["fill_s"], 1), "unit": "s", "target": ""},
    ]
    summary = {
        "readings_per_s": round(ing["readings_per_s"]),
        "cpu_readings_per_s": round(ing["cpu_readings_per_s"]),
        "group_commit_readings_per_s": round(group["readings_per_s"]),
        "group_commit_blocks_per_sync": round(group["blocks_per_sync"], 2),
        "fdatasync_page_ms": round(floor_s * 1e3, 4),
        "one_sync_per_block_ceiling_readings_per_s": round(ceiling),
        "tinydb_at_readings_per_s": round(at, 1),
        "tinydb_at_ms_per_block": round(tdb["at_ms_per_block"], 2),
        "tinydb_readings_per_s": round(avg, 1),
        **speedups,
        "write_amplification": round(amp, 3),
        "group_commit_write_amplification": round(group["amplification"], 3),
        "write_bytes_per_record_byte": round(ing["written"] / ing["record_bytes"], 3),
        "append_ms_small": round(sc["small_append_ms"], 4),
        "append_ms_big": round(sc["big_append_ms"], 4),
        "append_ratio_big_small": round(ratio, 3),
        "big_readings": sc["big_readings"],
        "open_big_ms": round(sc["open_big_ms"], 2),
        "ingest_readings": ing["readings"],
    }
    report("ingest: readings signed and committed", rows, summary, args.json)


if __name__ == "__main__":
    main()
