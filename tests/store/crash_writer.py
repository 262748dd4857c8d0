"""Crash-test writer: appends blocks to a ledger and prints each committed height.

Usage: python crash_writer.py LEDGER SEGMENT_BYTES RNG_SEED [sync|submit]

Opens the ledger (recovering its tail), prints ``ready H`` and then, forever, makes the
next 1-4 blocks and appends them, printing each height only once it is committed and
flushing stdout. ``sync`` (the default): ``append``/``append_many``, one fsync per batch.
``submit``: the agent's group commit -- batches are written with ``submit`` onto the
tip while up to 8 are in flight, and a height is printed when its future is done. The
test kills it with SIGKILL at random instants.
"""

from __future__ import annotations

import asyncio
import random
import sys

from agent.storage.store import BlockStore, StoreOptions
from tests.support.store import make_blocks


def report(heights: list[int]) -> None:
    sys.stdout.write("".join(f"{h}\n" for h in heights))
    sys.stdout.flush()


async def submitting(s: BlockStore, rng: random.Random) -> None:
    in_flight: set[asyncio.Future[None]] = set()
    while True:
        while len(in_flight) >= 8:
            _, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        prev = s.tip.header if s.tip is not None else None
        batch = make_blocks(rng.choice((1, 1, 1, 2, 4)), prev=prev, meters=rng.randint(1, 3))
        fut = s.submit(batch)
        heights = [b.height for b in batch]
        fut.add_done_callback(lambda f, hs=heights: f.exception() or report(hs))
        in_flight.add(fut)
        await asyncio.sleep(0)


def main() -> None:
    ledger_dir, segment_bytes, rng_seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else "sync"
    rng = random.Random(rng_seed)
    with BlockStore.open(ledger_dir, options=StoreOptions(segment_bytes=segment_bytes)) as s:
        print(f"ready {s.height}", flush=True)
        if mode == "submit":
            asyncio.run(submitting(s, rng))
        while True:
            prev = s.head.header if s.head is not None else None
            batch = make_blocks(rng.choice((1, 1, 1, 2, 4)), prev=prev, meters=rng.randint(1, 3))
            if len(batch) == 1:
                s.append(batch[0])
            else:
                s.append_many(batch)
            report([b.height for b in batch])


if __name__ == "__main__":
    main()
