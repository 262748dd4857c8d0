"""The ledger demo: synthetic meters, a throw-away gateway key, sealed blocks, a verified chain.

:func:`run_ledger_demo` is the ``meterchain demo`` of the ledger layer; it needs no
hardware. :class:`SyntheticMeters` and :func:`seal_chain` are also used by tests and
benchmarks to make realistic chains quickly.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import keyfiles as keys
import ledger
from agent.storage.store import BlockStore
from ledger import Block, ChainVerifier, Header, Reading
from ledger.errors import StoreError

INTERVAL_MS = 15 * 60 * 1000
"""Demo readings are taken every 15 minutes (one block per interval)."""

# (OBIS code, exponent, unit): energy import/export counters, voltage, active power
QUANTITIES: tuple[tuple[str, int, str], ...] = (
    ("1-0:1.8.0", 0, "Wh"),
    ("1-0:2.8.0", 0, "Wh"),
    ("1-0:32.7.0", -1, "V"),
    ("1-0:16.7.0", 0, "W"),
)


class SyntheticMeters:
    """Meters with rising integer energy counters, a little noise on voltage and power.

    Counters are a function of time (so a later run continues them upwards); voltage and
    power are drawn from a seeded ``random.Random``.
    """

    def __init__(self, count: int, *, seed: int | None = None, prefix: str = "demo-meter") -> None:
        self.rng = random.Random(seed)
        self.meters = [f"{prefix}-{i + 1}" for i in range(count)]
        # average power in W per meter; odd meters export (solar), even ones import
        self.import_w = [300 + 150 * i for i in range(count)]
        self.export_w = [0 if i % 2 == 0 else 200 + 50 * i for i in range(count)]

    @property
    def readings_per_interval(self) -> int:
        return len(self.meters) * len(QUANTITIES)

    def read_all(self, ts_ms: int) -> list[Reading]:
        """One reading of every quantity of every meter at ``ts_ms``."""
        out = []
        hours_ms = 3_600_000
        for i, meter in enumerate(self.meters):
            imp = 1_000_000 + self.import_w[i] * ts_ms // hours_ms
            exp = 500_000 + self.export_w[i] * ts_ms // hours_ms
            volts = 2300 + self.rng.randint(-40, 40)
            watts = self.import_w[i] - self.export_w[i] + self.rng.randint(-50, 50)
            for (obis, exponent, unit), value in zip(QUANTITIES, (imp, exp, volts, watts),
                                                      strict=True):
                out.append(Reading(meter, obis, value, exponent, unit, ts_ms,
                                   ledger.ClockSource.GATEWAY, 0))
        return out


def seal_chain(
    seed: bytes,
    meters: SyntheticMeters,
    n_blocks: int,
    *,
    prev: Header | None = None,
    start_ms: int = 1_767_225_600_000,
    intervals_per_block: int = 1,
    interval_ms: int = INTERVAL_MS,
) -> Iterator[Block]:
    """Seal ``n_blocks`` blocks of synthetic readings after ``prev`` (genesis if None).

    Each block holds ``intervals_per_block`` intervals of every meter's readings, with a
    random 16-byte salt per reading.
    """
    t = start_ms if prev is None else max(start_ms, prev.time_end_ms)
    for _ in range(n_blocks):
        readings: list[Reading] = []
        t0 = t
        for _ in range(intervals_per_block):
            readings.extend(meters.read_all(t))
            t += interval_ms
        t_end = t - interval_ms
        buf = os.urandom(ledger.SALT_SIZE * len(readings))  # one getrandom call per block
        salts = [buf[i : i + ledger.SALT_SIZE]
                 for i in range(0, len(buf), ledger.SALT_SIZE)]
        block = ledger.seal_block(seed, prev, readings, salts, t0, t_end)
        prev = block.header
        yield block


@dataclass(frozen=True)
class DemoResult:
    """What the demo did."""

    ledger_dir: Path
    kept: bool
    gateway_key: bytes
    blocks_written: int
    readings_written: int
    head_height: int
    head_hash: bytes
    verified_height: int


def run_ledger_demo(
    ledger_dir: str | os.PathLike[str] | None = None,
    *,
    blocks: int = 12,
    meters: int = 3,
    seed: int | None = None,
    now_ms: int | None = None,
    out: Callable[[str], None] = print,
) -> DemoResult:
    """Seal synthetic readings into ``blocks`` blocks, store them, verify the chain.

    Without ``ledger_dir`` a temporary ledger is used and removed afterwards. With it,
    the ledger (and the demo's gateway key in ``DIR/keys/``) is kept there; running the
    demo again on the same directory continues the chain.

    Raises:
        StoreError: ``ledger_dir`` holds something that is not a demo ledger.
        ChainError: the chain does not verify (never expected).
    """
    import time

    if blocks < 1:
        raise ValueError("the demo needs at least one block")
    kept = ledger_dir is not None
    d = Path(ledger_dir) if ledger_dir is not None else Path(tempfile.mkdtemp(prefix="mc-demo-"))
    try:
        return _demo(d, kept, blocks, meters, seed,
                     now_ms if now_ms is not None else int(time.time() * 1000), out)
    finally:
        if not kept:
            shutil.rmtree(d, ignore_errors=True)


def _demo(d: Path, kept: bool, blocks: int, n_meters: int, seed: int | None, now_ms: int,
          out: Callable[[str], None]) -> DemoResult:
    store_dir = d
    key_dir = d / "keys"
    key_path = key_dir / keys.GATEWAY_KEY
    if kept and d.exists() and any(d.iterdir()) and not key_path.exists():
        raise StoreError(f"{d}: not empty and not a demo ledger (no keys/{keys.GATEWAY_KEY}); "
                         "give a new directory")
    out("meterchain demo: synthetic meters -> signed blocks -> crash-safe store -> verify")
    with BlockStore.open(store_dir) as store:
        if store.head is None and not key_path.exists():
            public = keys.generate_gateway_key(key_dir)
            out(f"  gateway key : new throw-away Ed25519 key {public.hex()}")
            out(f"                ({key_path}, mode 0600)")
        else:
            public = keys.public_from_seed(keys.load_signing_key(key_path))
            out(f"  gateway key : {public.hex()} (from {key_path})")
        seed_bytes = keys.load_signing_key(key_path)
        sim = SyntheticMeters(n_meters, seed=seed)
        head = store.head
        start = now_ms - blocks * INTERVAL_MS
        if head is not None:
            start = max(start, head.header.time_end_ms + INTERVAL_MS)
            out(f"  continuing  : ledger already holds heights {store.first_height}.."
                f"{store.height}")
        out(f"  meters      : {', '.join(sim.meters)}")
        out("  quantities  : " + ", ".join(f"{o} ({u})" for o, _, u in QUANTITIES))
        first_new = store.height + 1
        for block in seal_chain(seed_bytes, sim, blocks,
                                prev=None if head is None else head.header, start_ms=start):
            store.append(block)  # one fsync per block
        n_readings = blocks * sim.readings_per_interval
        out(f"  sealed      : {blocks} blocks x {sim.readings_per_interval} readings = "
            f"{n_readings} readings, heights {first_new}..{store.height}, one block per "
            f"15-minute interval, each appended with one fsync")
        verifier = ChainVerifier(gateway_key=public)
        for rec in store.iter_records(store.first_height):
            verifier.add(Block.decode(rec))
        assert verifier.head is not None and store.head is not None
        out(f"  stored      : {store_dir} ({store.segment_count} segment(s), "
            f"{store.disk_usage():,} bytes on disk)")
        out(f"  verified    : signatures, Merkle roots and links of heights "
            f"{store.first_height}..{verifier.head.height}: OK")
        out(f"  head        : height {verifier.head.height}, hash {verifier.head.hash.hex()}")
        result = DemoResult(store_dir, kept, public, blocks, n_readings, store.height,
                            store.head.hash, verifier.head.height)
    if kept:
        out(f"  try         : meterchain show {store_dir}")
        out(f"                meterchain verify {store_dir}")
        out(f"                meterchain prove {store_dir} --height 0 --index 0 -o proof.json")
        out("                meterchain verify-proof proof.json")
    else:
        out("  (the temporary ledger is removed; `meterchain demo --ledger DIR` keeps it)")
    return result
