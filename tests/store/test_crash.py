"""Crash safety with real processes and real files.

- A writer process is killed with SIGKILL at random instants (>= 200 times); after each
  kill the store opens, the chain verifies and every height the writer reported
  committed is present.
- Cutting the file anywhere inside the last two blocks recovers to the last whole block.
- The TinyDB state file survives SIGKILL during writes (growing and shrinking).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ledger
from agent.storage import store
from agent.storage.state import StateDB
from agent.storage.store import BlockStore, StoreOptions
from ledger import Block, ChainHead, ChainVerifier
from tests.support.store import make_blocks

ROOT = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).with_name("crash_writer.py")
KILLS = int(os.environ.get("MC_CRASH_KILLS", "200"))
SEGMENT_BYTES = 48 * 1024  # small: kills also land on segment roll-over


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _run_and_kill(args: list[str], rng: random.Random, *, ready: bool = True
                  ) -> tuple[list[str], int]:
    """Start a writer, kill it at a random instant, return its stdout lines."""
    # unbuffered: readline must not read ahead what communicate() then would not see
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(), cwd=ROOT, bufsize=0)
    assert proc.stdout is not None
    if ready and rng.random() < 0.85:
        line = proc.stdout.readline()  # wait until it opened the store (recovery done)
        assert line.startswith(b"ready"), (line, proc.stderr.read() if proc.stderr else b"")
        first = [line.decode()]
        time.sleep(rng.uniform(0.0, 0.12))
    else:
        first = []
        time.sleep(rng.uniform(0.0, 0.4))  # anywhere: start-up, recovery or writing
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    return first + out.decode().splitlines(), proc.returncode


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "submit"])
def test_sigkill_during_appends_loses_no_committed_block(tmp_path: Path, mode: str) -> None:
    """``sync``: append/append_many; ``submit``: the agent's group commit, several
    batches in flight while the sync thread fdatasyncs."""
    rng = random.Random(2026)
    d = tmp_path / "ledger"
    verified: ChainHead | None = None
    hashes: dict[int, bytes] = {}
    reported_max = -1
    total_reported = 0
    for kill in range(KILLS):
        lines, _ = _run_and_kill([str(WRITER), str(d), str(SEGMENT_BYTES), str(kill), mode],
                                 rng, ready=d.exists())
        committed = [int(x) for x in lines if not x.startswith("ready")]
        total_reported += len(committed)
        if committed:
            reported_max = max(reported_max, max(committed))
        with BlockStore.open(d, options=StoreOptions(segment_bytes=SEGMENT_BYTES)) as s:
            assert s.height >= reported_max, f"kill {kill}: lost committed blocks"
            for h in committed:
                hashes[h] = s.get(h).hash  # every reported height is there
            # blocks verified after earlier kills are still exactly there
            for h in rng.sample(sorted(hashes), min(5, len(hashes))):
                assert s.get(h).hash == hashes[h]
            start = 0 if verified is None else verified.height + 1
            v = ChainVerifier(verified)
            for rec in s.iter_records(start):
                v.add(Block.decode(rec))
            verified = v.head
            assert (verified.height if verified else -1) == s.height
    # the kills hit a writer that was writing (how many blocks it reported before each
    # kill depends on the machine's speed, so only that it reported some is asserted)
    assert total_reported > 0 and verified is not None
    with BlockStore.open(d, options=StoreOptions(read_only=True)) as s:
        head = ledger.verify_chain(Block.decode(r) for r in s.iter_records(0))
        assert head is not None and head == verified
        assert s.segment_count > 1


def _cut_and_open(seg: Path, data: bytes, cut: int, idx: Path, idx_bytes: bytes | None,
                  align: int) -> BlockStore:
    seg.write_bytes(data[:cut])
    if idx_bytes is None:
        idx.unlink(missing_ok=True)
    else:
        idx.write_bytes(idx_bytes)
    return BlockStore.open(seg.parent.parent, options=StoreOptions(align=align, fsync=False))


@pytest.fixture
def shm_path(tmp_path: Path) -> Iterator[Path]:
    """A directory in RAM where there is one: rewriting a file thousands of times on ext4
    triggers its replace-via-truncate flush each time, which only makes the test slow."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="mc-trunc-", dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d)


@pytest.mark.slow
@pytest.mark.parametrize("align", [1, 4096])
@pytest.mark.parametrize("keep_index", [True, False])
def test_truncation_anywhere_in_the_last_two_blocks(shm_path: Path, align: int,
                                                    keep_index: bool) -> None:
    tmp_path = shm_path
    blocks = make_blocks(6, meters=2)
    hashes = [b.hash for b in blocks]
    with BlockStore.open(tmp_path, options=StoreOptions(align=align)) as s:
        s.append_many(blocks[:4])
        s.append(blocks[4])
        s.append(blocks[5])
    seg = tmp_path / "segments" / "00000000000000000000.seg"
    idx = seg.with_suffix(".idx")
    data = seg.read_bytes()
    idx_bytes = idx.read_bytes() if keep_index else None
    offsets = store.read_index(idx)
    ends = [o + store.FRAME_SIZE + len(b.encode()) for o, b in zip(offsets, blocks, strict=True)]
    rng = random.Random(align)
    checked = 0
    for cut in range(offsets[4], len(data) + 1):
        whole = sum(1 for e in ends if e <= cut)
        with _cut_and_open(seg, data, cut, idx, idx_bytes, align) as s:
            assert s.height == whole - 1, f"cut at {cut}"
            assert s.head is not None and s.head.hash == hashes[whole - 1]
            appended = rng.random() < 0.02  # now and then: the store goes on correctly
            if appended:
                s.append_many(blocks[whole:])
                checked += 1
        if appended:
            with BlockStore.open(tmp_path, options=StoreOptions(align=align)) as s:
                assert s.height == 5
                assert ledger.verify_chain(s.get(h) for h in range(6)) is not None
    assert checked > 0


_STATE_WRITER = """
import sys
from agent.storage.state import StateDB
db = StateDB(sys.argv[1])
i = max(db.cursor("r1"), 0)  # restart after the last fully written round
print("ready", flush=True)
while True:
    i += 1
    size = 400 if i % 2 else 3   # alternately grow and shrink the file
    db.set("i", i)
    db.set("blob", [i] * size)
    db.set_cursor("r1", i)
    print(i, flush=True)
"""


@pytest.mark.slow
def test_tinydb_state_survives_sigkill_during_writes(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "state.json"
    script = tmp_path / "state_writer.py"
    script.write_text(_STATE_WRITER)
    acked = prev_i = 0
    for _ in range(40):
        lines, _ = _run_and_kill([str(script), str(path)], rng, ready=path.exists())
        done = [int(x) for x in lines if not x.startswith("ready")]
        if done:
            acked = done[-1]
        with StateDB(path) as db:  # always whole, valid JSON
            i = db.get("i", 0)
            # every acknowledged write is there; at most the one in flight is extra
            assert max(acked, prev_i) <= i <= max(done or [prev_i]) + 1
            assert max(db.cursor("r1"), 0) in (i, i - 1)
            blob = db.get("blob")
            assert blob is None or set(blob) <= {i, i - 1}
            prev_i = i
    assert acked > 40
