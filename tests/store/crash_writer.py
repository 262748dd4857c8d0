"""Crash-test writer: appends blocks to a ledger and prints each committed height.

Usage: python crash_writer.py LEDGER SEGMENT_BYTES RNG_SEED

Opens the ledger (recovering its tail), prints ``ready H`` and then, forever, seals the
next 1-4 blocks, appends them (one fsync per batch) and prints each height only after
the append returned, flushing stdout. The test kills it with SIGKILL at random instants.
"""

from __future__ import annotations

import random
import sys

from agent.store import BlockStore, StoreOptions
from tests.support.store import make_blocks


def main() -> None:
    ledger_dir, segment_bytes, rng_seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(rng_seed)
    with BlockStore.open(ledger_dir, options=StoreOptions(segment_bytes=segment_bytes)) as s:
        print(f"ready {s.height}", flush=True)
        while True:
            prev = s.head.header if s.head is not None else None
            batch = make_blocks(rng.choice((1, 1, 1, 2, 4)), prev=prev, meters=rng.randint(1, 3))
            if len(batch) == 1:
                s.append(batch[0])
            else:
                s.append_many(batch)
            sys.stdout.write("".join(f"{b.height}\n" for b in batch))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
