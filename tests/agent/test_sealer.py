"""Sealer: policy (N seconds or M readings), clamped spans, sealed payloads, disk full."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import nacl.public
import pytest

from agent.pipeline.sealer import Sealer
from agent.service.config import SealingConfig
from agent.storage.store import BlockStore, StoreOptions
from ledger import (
    Block,
    PayloadEncoding,
    Reading,
    block_readings,
    decode_blocks,
    open_block,
    verify_chain,
)
from ledger.errors import StoreFullError

SEED = bytes(range(32))


def readings(meter: str, n: int, t_ms: int, start: int = 0) -> list[Reading]:
    return [Reading.make(meter, "1-0:1.8.0", start + i, 0, "Wh", t_ms) for i in range(n)]


def open_store(path: Path, **kw: object) -> BlockStore:
    return BlockStore.open(path, options=StoreOptions(fsync=False, **kw))  # type: ignore[arg-type]


def chain(store: BlockStore) -> list[Block]:
    blocks = list(decode_blocks(store.iter_records(store.first_height)))
    verify_chain(blocks)
    return blocks


def test_seals_when_max_readings_are_pending(tmp_path: Path) -> None:
    store = open_store(tmp_path / "l")
    committed: list[Block] = []
    s = Sealer(SealingConfig(interval_s=3600, max_readings=10), store, SEED,
               on_commit=committed.append)
    s.add(readings("a", 9, 1_000), 1_000)
    assert not s.due()
    s.add(readings("a", 6, 2_000, 9), 2_000)
    assert s.due()
    assert s.seal_some()
    assert not s.due() and s.pending == 5
    (b,) = chain(store)
    assert b.header.reading_count == 10 and committed == [b]
    assert [r.value for r, _ in block_readings(b)] == list(range(10))
    salts = [salt for _, salt in block_readings(b)]
    assert len(set(salts)) == 10 and bytes(16) not in salts  # fresh random salts


def test_seals_after_interval_with_few_readings(tmp_path: Path) -> None:
    store = open_store(tmp_path / "l")
    mono = [100.0]
    s = Sealer(SealingConfig(interval_s=5, max_readings=1000), store, SEED,
               mono=lambda: mono[0])
    s.add(readings("a", 2, 1_000), 1_000)
    mono[0] += 4.9
    assert not s.due()
    mono[0] += 0.2
    assert s.due()
    assert s.seal_some()
    assert store.height == 0


async def _until(cond: Callable[[], bool], limit_s: float = 30.0) -> None:
    """Wait for ``cond`` without assuming how fast this machine is (fails only after
    ``limit_s``, far beyond any sealing interval used here)."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


def test_run_loop_applies_policy_and_flush_seals_the_rest(tmp_path: Path) -> None:
    store = open_store(tmp_path / "l")
    s = Sealer(SealingConfig(interval_s=0.3, max_readings=100), store, SEED)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(s.run(stop))
        s.add(readings("a", 3, 1_000), 1_000)
        await _until(lambda: store.height == 0)  # sealed by time (3 readings < 100)
        s.add(readings("a", 250, 2_000), 2_000)
        # two full blocks without waiting for the interval; the rest stays pending
        await _until(lambda: store.height == 2 and s.pending == 50)
        assert store.height == 2 and s.pending == 50
        s.add(readings("a", 1, 3_000), 3_000)
        stop.set()
        await task
        assert s.flush() == 0

    asyncio.run(scenario())
    blocks = chain(store)
    assert [b.header.reading_count for b in blocks] == [3, 100, 100, 51]


def test_time_never_goes_backwards_after_a_clock_step(tmp_path: Path) -> None:
    store = open_store(tmp_path / "l")
    s = Sealer(SealingConfig(interval_s=1, max_readings=2), store, SEED)
    s.add(readings("a", 2, 5_000_000), 5_000_000)
    s.seal_some()
    s.add(readings("a", 2, 1_000), 1_000)  # the clock stepped back by more than an hour
    s.seal_some()
    s.add(readings("b", 1, 4_999_000), 4_999_000)  # catching up, still before b0's end
    s.add(readings("a", 1, 5_000_500), 5_000_500)
    s.seal_some()
    b0, b1, b2 = chain(store)
    assert (b1.header.time_start_ms, b1.header.time_end_ms) == (5_000_000, 5_000_000)
    assert (b2.header.time_start_ms, b2.header.time_end_ms) == (5_000_000, 5_000_500)
    assert [r.timestamp_ms for r, _ in block_readings(b1)] == [1_000, 1_000]  # kept as taken


def test_sealed_to_utility_key_with_fresh_ephemeral_keys(tmp_path: Path) -> None:
    store = open_store(tmp_path / "l")
    utility = nacl.public.PrivateKey.generate()
    s = Sealer(SealingConfig(max_readings=3), store, SEED,
               recipient_key=bytes(utility.public_key))
    for i in range(2):
        s.add(readings("a", 3, 1_000 + i, 10 * i), 1_000 + i)
        s.seal_some()
    b0, b1 = chain(store)
    assert b0.header.payload_encoding is PayloadEncoding.SEALED
    assert b0.payload[:32] != b1.payload[:32]  # a fresh ephemeral key per block
    assert [r.value for r in open_block(b1, bytes(utility))] == [10, 11, 12]


class FullOnce:
    """The real store, refusing appends while ``full`` is set (as on a full disk)."""

    def __init__(self, store: BlockStore) -> None:
        self.store = store
        self.full = True

    @property
    def head(self):  # type: ignore[no-untyped-def]
        return self.store.head

    @property
    def tip(self):  # type: ignore[no-untyped-def]
        return self.store.tip

    def append_many(self, blocks: Sequence[Block]) -> None:
        if self.full:
            raise StoreFullError("no space left on device")
        self.store.append_many(blocks)

    def submit(self, blocks: Sequence[Block]) -> asyncio.Future[None]:
        if self.full:
            raise StoreFullError("no space left on device")
        return self.store.submit(blocks)

    def drain(self) -> None:
        self.store.drain()


def test_store_full_keeps_readings_bounded_and_resumes(tmp_path: Path) -> None:
    store = open_store(tmp_path / "l")
    sink = FullOnce(store)
    mono = [0.0]
    s = Sealer(SealingConfig(max_readings=100, max_pending_readings=250,
                             retry_interval_s=2), sink, SEED, mono=lambda: mono[0])
    s.add(readings("a", 100, 1_000), 1_000)
    assert not s.seal_some()
    assert s.store_full and s.pending == 100 and not s.due()  # waits for the retry
    s.add(readings("a", 200, 2_000, 100), 2_000)
    assert s.pending == 250 and s.dropped_readings == 50  # oldest pending dropped
    mono[0] += 2.1
    assert s.due()
    sink.full = False
    while s.pending:
        assert s.seal_some()
    assert not s.store_full
    values = [r.value for b in chain(store) for r, _ in block_readings(b)]
    assert values == list(range(50, 300))  # the 50 oldest were dropped, nothing else


def test_store_error_other_than_full_stops_with_readings_kept(tmp_path: Path) -> None:
    store = open_store(tmp_path / "l")

    class Broken(FullOnce):
        def append_many(self, blocks: Sequence[Block]) -> None:
            raise OSError(5, "Input/output error")

    s = Sealer(SealingConfig(max_readings=10), Broken(store), SEED)
    s.add(readings("a", 10, 1), 1)
    try:
        s.seal_some()
    except Exception as exc:  # noqa: BLE001 - asserting on the type below
        assert type(exc).__name__ == "StoreError"
        assert "Input/output error" in str(exc)
    else:
        raise AssertionError("StoreError expected")
    assert s.pending == 10


def test_real_enospc_on_a_small_tmpfs(small_fs: Path) -> None:
    """A real filesystem fills up: the store refuses, the sealer holds, then resumes."""
    store = BlockStore.open(small_fs / "ledger", options=StoreOptions(segment_bytes=1 << 20))
    s = Sealer(SealingConfig(max_readings=20, max_pending_readings=100_000,
                             retry_interval_s=0.1), store, SEED)
    filler = small_fs / "filler"
    with open(filler, "wb") as fh:  # leave ~40 KiB free
        free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
        fh.write(bytes(max(0, free - 40 * 1024)))
    n = 0
    committed_before_full = -1
    for i in range(2000):
        s.add(readings("a", 20, 1_000 + i, n), 1_000 + i)
        n += 20
        s._retry_at = None  # no waiting in this test
        if not s.seal_some():
            committed_before_full = store.height
            break
    assert s.store_full and committed_before_full >= 0
    for i in range(10):  # keep polling while full
        s.add(readings("a", 20, 5_000 + i, n), 5_000 + i)
        n += 20
    filler.unlink()
    s._retry_at = None
    assert s.flush() == 0
    store.close()
    reopened = BlockStore.open(small_fs / "ledger")
    values = [r.value for b in chain(reopened) for r, _ in block_readings(b)]
    reopened.close()
    assert values == list(range(n))  # every reading, once, in order


GATE_LIMIT_S = 60.0
"""A gated fdatasync gives up waiting after this long (a test bug, not a slow machine)."""


def _stall_syncs(monkeypatch: pytest.MonkeyPatch, stall_s: float,
                 fail_call: int = 0, gate: threading.Event | None = None) -> list[int]:
    """Make the real store's fdatasync stall (an SD card); returns the list of calls.

    With ``gate``, each sync also waits until the test opens the gate: the test then
    knows a sync is in progress for as long as it keeps the gate closed."""
    real = os.fdatasync
    calls: list[int] = []

    def stalling(fd: int) -> None:
        calls.append(fd)
        time.sleep(stall_s)
        if gate is not None:
            assert gate.wait(GATE_LIMIT_S), "the test never opened the sync gate"
        if len(calls) == fail_call:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr("agent.storage.store.os.fdatasync", stalling)
    return calls


@pytest.mark.parametrize("sync_fails", [False, True], ids=["sync-ok", "sync-enospc"])
def test_cancelled_commit_loses_no_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          sync_fails: bool) -> None:
    """Cancelled mid-commit (shutdown), the batch is either committed or pending again."""
    store = BlockStore.open(tmp_path / "l")  # with fsync: the commit really syncs
    s = Sealer(SealingConfig(max_readings=10), store, SEED)
    s.add(readings("a", 10, 1), 1)
    assert s.seal_some()  # the segment exists, the next commit syncs off the loop
    gate = threading.Event()
    calls = _stall_syncs(monkeypatch, 0.0, fail_call=1 if sync_fails else 0, gate=gate)
    s.add(readings("a", 10, 100, 10), 100)

    async def go() -> None:
        task = asyncio.create_task(s.run(asyncio.Event()))
        await _until(lambda: len(calls) == 1)  # sealed, written, its sync held at the gate
        assert s.pending == 10 and store.height == 0 and store.in_flight == 1
        task.cancel()  # shutdown while the commit's sync is in progress
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert store.height == (0 if sync_fails else 1)
    assert s.pending == (10 if sync_fails else 0)
    s.flush()
    values = [r.value for b in chain(store) for r, _ in block_readings(b)]
    assert values == list(range(20)) and s.pending == 0


class InFlightWatch(FullOnce):
    """The real store, never full; records how many blocks were in flight per submit."""

    def __init__(self, store: BlockStore) -> None:
        super().__init__(store)
        self.full = False
        self.in_flight: list[int] = []
        self.on_submit: Callable[[int], None] = lambda in_flight: None

    def submit(self, blocks: Sequence[Block]) -> asyncio.Future[None]:
        fut = self.store.submit(blocks)
        self.in_flight.append(self.store.in_flight)
        self.on_submit(self.store.in_flight)
        return fut


async def _commit_all_then_stop(s: Sealer, total: int, stop: asyncio.Event,
                                task: asyncio.Task[None]) -> None:
    """Wait until the run loop committed every whole block of the ``total`` readings
    (fewer than ``max_readings`` left wait for the interval), then stop it."""
    await _until(lambda: task.done() or (
        not s.store_full and s.pending < s.cfg.max_readings
        and s.readings_committed + s.pending == total))
    stop.set()
    await task


def _run_until(s: Sealer, done: Callable[[], bool], limit_s: float = 20.0) -> None:
    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(s.run(stop))
        t0 = time.monotonic()
        while not done() and time.monotonic() - t0 < limit_s and not task.done():
            await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(go())


@pytest.mark.parametrize("limit", [64, 3, 1])
def test_blocks_sealed_during_a_stalled_sync_share_the_next_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """Group commit: while one fdatasync stalls, the due blocks are sealed onto the block
    being synced and written (at most max_blocks_in_flight waiting at once); the next
    fdatasync covers them all. Each is reported committed only once durable.

    The first sync is held until max_blocks_in_flight blocks wait (or all 20), however
    long sealing them takes on this machine."""
    store = BlockStore.open(tmp_path / "l")
    sink = InFlightWatch(store)
    gate = threading.Event()
    sink.on_submit = lambda n: gate.set() if n >= min(limit, 20) else None
    seen: list[tuple[int, int]] = []  # (block committed, store height when reported)
    s = Sealer(SealingConfig(max_readings=10, max_blocks_in_flight=limit), sink, SEED,
               on_commit=lambda b: seen.append((b.height, store.height)))
    s.add(readings("a", 10, 1), 1)
    assert s.seal_some()  # genesis creates the segment (synchronously)
    calls = _stall_syncs(monkeypatch, 0.0, gate=gate)
    s.add(readings("a", 200, 100, 10), 100)
    _run_until(s, lambda: s.readings_committed == 210)
    assert s.pending == 0 and store.height == 20 and store.in_flight == 0
    values = [r.value for b in chain(store) for r, _ in block_readings(b)]
    assert values == list(range(210))
    assert max(sink.in_flight) == min(limit, 20)
    if limit == 1:
        assert len(calls) == 20  # nothing to share: one fdatasync per block
    elif limit == 64:  # all 20 were written before or during the first sync
        assert len(calls) <= 2
    else:
        assert 20 / limit <= len(calls) < 20
    assert all(height <= at for height, at in seen)  # reported only once durable
    assert [h for h, _ in seen] == list(range(21))


def test_failed_sync_voids_the_blocks_written_after_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while blocks wait for it: the store cuts off every block the
    failed fdatasync may not cover; their readings are sealed again once space returns:
    every reading ends up committed exactly once, in order."""
    store = BlockStore.open(tmp_path / "l")
    mono = [0.0]
    s = Sealer(SealingConfig(max_readings=10, retry_interval_s=1, max_blocks_in_flight=4),
               store, SEED, mono=lambda: mono[0])
    s.add(readings("a", 10, 1), 1)
    assert s.seal_some()
    _stall_syncs(monkeypatch, 0.05, fail_call=2)
    s.add(readings("a", 90, 2, 10), 2)

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(s.run(stop))
        await _until(lambda: s.store_full)
        # what the first sync covered landed; what the failed one was to cover is cut off
        assert s.store_full and 1 <= store.height < 9
        assert store.tip == store.head and store.in_flight == 0
        landed = store.height
        assert s.readings_committed == 10 * (landed + 1)
        assert s.pending == 100 - s.readings_committed == s.to_json()["pending_readings"]
        waiting = s._waiter
        s._kick()  # woken before the retry interval is over, it goes back to waiting
        await _until(lambda: s._waiter is not None and s._waiter is not waiting)
        assert store.height == landed and s.store_full
        mono[0] += 1.5
        s._kick()
        await _until(lambda: s.readings_committed == 100)
        stop.set()
        await task

    asyncio.run(go())
    assert not s.store_full and s.pending == 0
    values = [r.value for b in chain(store) for r, _ in block_readings(b)]
    assert values == list(range(100))


def test_pipelined_real_enospc_on_a_small_tmpfs(small_fs: Path) -> None:
    """The run loop on a real filesystem that fills up mid-pipeline: every reading is
    committed once, in order, after space returns."""
    store = BlockStore.open(small_fs / "ledger", options=StoreOptions(segment_bytes=1 << 20))
    s = Sealer(SealingConfig(max_readings=20, max_pending_readings=100_000,
                             retry_interval_s=0.1, max_blocks_in_flight=8), store, SEED)
    filler = small_fs / "filler"
    with open(filler, "wb") as fh:  # leave ~40 KiB free
        free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
        fh.write(bytes(max(0, free - 40 * 1024)))
    n = 0

    async def go() -> None:
        nonlocal n
        stop = asyncio.Event()
        task = asyncio.create_task(s.run(stop))
        for i in range(400):  # ~800 KiB of blocks for ~40 KiB free
            s.add(readings("a", 20, 1_000 + i, n), 1_000 + i)
            n += 20
            await asyncio.sleep(0.002)
            if s.store_full:
                break
        await _until(lambda: s.store_full)
        height_when_full = store.height
        failures = s.commit_failures
        await _until(lambda: s.commit_failures >= failures + 2)  # it retried, still full
        assert store.height == height_when_full
        filler.unlink()
        await _commit_all_then_stop(s, n, stop, task)

    asyncio.run(go())
    assert s.flush() == 0
    store.close()
    reopened = BlockStore.open(small_fs / "ledger")
    values = [r.value for b in chain(reopened) for r, _ in block_readings(b)]
    reopened.close()
    assert values == list(range(n))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_disk_failures_commit_every_reading_once_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """The run loop over small segments while writes and syncs fail at random (ENOSPC,
    partial writes) and readings keep arriving: at the end every reading is committed
    exactly once, in the order it was taken, and nothing was reported committed that the
    reopened store does not hold."""
    import random

    import agent.storage.store as store_mod

    rng = random.Random(seed)
    real_sync, real_write = os.fdatasync, store_mod.write_all
    raised = {"sync": 0, "write": 0}

    def flaky_sync(fd: int) -> None:
        time.sleep(rng.uniform(0, 0.002))
        if rng.random() < 0.25:
            raised["sync"] += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        real_sync(fd)

    def flaky_write(fd: int, buf: bytes) -> None:
        if rng.random() < 0.05:
            raised["write"] += 1
            os.write(fd, buf[: rng.randrange(len(buf))])
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fd, buf)

    store = BlockStore.open(tmp_path / "l", options=StoreOptions(
        segment_bytes=64 * 1024, group_commit_delay_s=0.0005))
    reported: list[Block] = []
    s = Sealer(SealingConfig(max_readings=20, retry_interval_s=0.1, max_blocks_in_flight=8,
                             max_pending_readings=100_000), store, SEED,
               on_commit=reported.append)
    monkeypatch.setattr("agent.storage.store.os.fdatasync", flaky_sync)
    monkeypatch.setattr(store_mod, "write_all", flaky_write)
    n = 0

    async def go() -> None:
        nonlocal n
        stop = asyncio.Event()
        task = asyncio.create_task(s.run(stop))
        for i in range(300):
            k = rng.randint(1, 40)
            s.add(readings("a", k, 1_000 + i, n), 1_000 + i)
            n += k
            await asyncio.sleep(rng.choice((0, 0.002, 0.005)))
        monkeypatch.undo()  # the disk recovers
        await _commit_all_then_stop(s, n, stop, task)

    asyncio.run(go())
    assert raised["sync"] >= 2 and raised["write"] >= 2, raised
    assert s.flush() == 0 and s.commit_failures == 0
    store.close()
    with BlockStore.open(tmp_path / "l") as again:
        stored = chain(again)
    assert [b.hash for b in stored] == [b.hash for b in reported]
    values = [r.value for b in stored for r, _ in block_readings(b)]
    assert values == list(range(n))
