"""Offline chain verification speed: readings verified per second on one core.

    python bench/verify.py [--readings 1000000] [--block-size 64] [--json]

Builds a chain of ``--readings`` readings in blocks of ``--block-size`` once (build
time is printed separately, not counted), then times (best of ``--repeat``, wall clock;
CPU time alongside, since the machine may be shared) ``ledger.verify_records``
over the block records: decoding, links, signatures, payload hashes, canonical form
of every reading and Merkle roots -- everything the spec requires. Target: >= 200,000
readings/s with 64-reading blocks.

For context, the same run times on the first ``--compare-readings`` readings:
- the same verification plus decoding every reading into a ``Reading`` (what a
  consumer of the values pays; the path the core used before its fast check),
- the clean-room verifier written from docs/ledger-format.md (tests/ledger/cleanroom.py),
- Ed25519 signature checks alone (the floor set by the cryptography).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nacl.signing  # noqa: E402
from _common import add_common_args, report  # noqa: E402

import ledger as L  # noqa: E402
from tests.ledger import cleanroom  # noqa: E402

SEED = hashlib.sha256(b"bench/verify gateway").digest()
T0 = 1_767_225_600_000
METERS = [f"gw-bench-meter-{i:02d}" for i in range(8)]
QUANTITIES = [("1-0:1.8.0", 0, "Wh"), ("1-0:2.8.0", 0, "Wh"), ("1-0:32.7.0", -1, "V"),
              ("1-0:1.7.0", 0, "W")]


def build(readings: int, block_size: int) -> list[bytes]:
    """A valid chain of ``readings`` readings as block records (plain payloads)."""
    records: list[bytes] = []
    prev = None
    t = T0
    n = 0
    while n < readings:
        count = min(block_size, readings - n)
        batch = []
        for i in range(count):
            obis, exp, unit = QUANTITIES[(n + i) % len(QUANTITIES)]
            batch.append(L.Reading(METERS[(n + i) % len(METERS)], obis, 100_000 + n + i, exp,
                                   unit, t + i * 10))
        salts = [hashlib.sha256(b"%d" % (n + i)).digest()[:16] for i in range(count)]
        blk = L.seal_block(SEED, prev, batch, salts, t, t + count * 10)
        records.append(blk.encode())
        prev = blk.header
        t += count * 10 + 1
        n += count
    return records


def full_decode(records: list[bytes]) -> None:
    """Verify, then decode every reading to a Reading object (decode + re-encode check)."""
    verifier = L.ChainVerifier()
    for rec in records:
        verifier.add_record(rec)
        L.block_readings(L.Block.decode(rec))


def cleanroom_verify(records: list[bytes]) -> None:
    failure = cleanroom.verify_chain(records)
    if failure is not None:
        raise SystemExit(f"clean-room verifier rejected the bench chain: {failure}")


def signatures_only(records: list[bytes]) -> None:
    for rec in records:
        key = nacl.signing.VerifyKey(rec[6:38])
        key.verify(L.header_hash(rec[: L.HEADER_SIZE]), rec[L.HEADER_SIZE: L.HEADER_SIZE + 64])


def measure(fn: Callable[[list[bytes]], object], records: list[bytes]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(records)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000,
                        help="readings in the chain (default 1,000,000)")
    parser.add_argument("--block-size", type=int, default=64, help="readings per block")
    parser.add_argument("--repeat", type=int, default=3,
                        help="time the main verification this many times; report the best")
    parser.add_argument("--compare-readings", type=int, default=200_000,
                        help="readings used for the comparison rows (default 200,000)")
    add_common_args(parser)
    args = parser.parse_args()
    if args.readings < 1 or args.repeat < 1 or not 1 <= args.block_size <= L.MAX_READINGS_PER_BLOCK:
        parser.error("--readings and --repeat must be >= 1 and --block-size in 1..65535")

    t = time.perf_counter()
    records = build(args.readings, args.block_size)
    build_s = time.perf_counter() - t
    chain_bytes = sum(len(r) for r in records)

    def verify(recs: list[bytes]) -> None:
        head = L.verify_records(recs)
        assert head is not None and head.height == len(recs) - 1

    runs = sorted((measure(verify, records) for _ in range(args.repeat)), key=lambda r: r[0])
    wall, cpu = runs[0]
    median_wall = runs[len(runs) // 2][0]
    rows = [{"path": f"verify_records (ledger core), best of {args.repeat}",
             "readings": args.readings,
             "blocks": len(records), "seconds": round(wall, 3),
             "readings_per_s": round(args.readings / wall),
             "cpu_readings_per_s": round(args.readings / cpu) if cpu else 0}]
    main_rate = args.readings / wall

    sub_blocks = max(1, min(len(records), args.compare_readings // args.block_size))
    sub = records[:sub_blocks]
    sub_readings = min(args.readings, sub_blocks * args.block_size)
    for name, fn in (("verify + decode every Reading", full_decode),
                     ("clean-room verifier (spec only)", cleanroom_verify),
                     ("Ed25519 signatures only", signatures_only)):
        w, c = measure(fn, sub)
        rows.append({"path": name, "readings": sub_readings, "blocks": len(sub),
                     "seconds": round(w, 3), "readings_per_s": round(sub_readings / w),
                     "cpu_readings_per_s": round(sub_readings / c) if c else 0})

    summary = {
        "readings": args.readings,
        "block_size": args.block_size,
        "build_seconds": round(build_s, 2),
        "chain_bytes": chain_bytes,
        "verify_seconds": round(wall, 3),
        "verify_seconds_median": round(median_wall, 3),
        "cpu_readings_per_s": round(args.readings / cpu) if cpu else 0,
        "readings_per_s": round(main_rate),
        "target_readings_per_s": 200_000,
        "meets_target": main_rate >= 200_000,
    }
    report("offline chain verification (bench/verify.py)", rows, summary, args.json)


if __name__ == "__main__":
    main()
