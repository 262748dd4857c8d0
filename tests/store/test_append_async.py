"""submit / append_async: the commit's fsync runs in the store's sync thread, blocks
written meanwhile share the next fdatasync (group commit), a block is visible only once
durable, and a failed sync cuts every block it may not cover off the file. The slow or
failing fsync (and a failing write) is injected into the real store's calls."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.storage.store import BlockStore, StoreOptions
from ledger import Block
from ledger.errors import ChainError, StoreFullError
from tests.support.store import make_blocks

STALL_S = 0.3
LIMIT_S = 30.0
"""Waits for a state fail only after this long (a hang, never a slow machine)."""


def _sync_with(monkeypatch: pytest.MonkeyPatch, *, stall_s: float = STALL_S,
               fail: Callable[[int], bool] = lambda n: False,
               gate: threading.Event | None = None) -> list[int]:
    """Make fdatasync stall ``stall_s`` (an SD card) and fail with ENOSPC on the calls
    ``fail`` picks (1-based); returns the calls' sizes of the file at sync time.

    With ``gate``, a sync also waits until the test opens the gate, so the test knows
    the sync is in progress (``calls`` has grown) for as long as it keeps it closed."""
    real = os.fdatasync
    calls: list[int] = []

    def slow(fd: int) -> None:
        calls.append(os.fstat(fd).st_size)
        time.sleep(stall_s)
        if gate is not None:
            assert gate.wait(LIMIT_S), "the test never opened the sync gate"
        if fail(len(calls)):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr("agent.storage.store.os.fdatasync", slow)
    return calls


async def _until(cond: Callable[[], bool]) -> None:
    """Wait for ``cond`` however fast this machine is (up to LIMIT_S)."""
    deadline = time.monotonic() + LIMIT_S
    while not cond():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.005)


def _genesis_only(tmp_path: Path, n: int) -> tuple[BlockStore, list[Block]]:
    """A store holding the first of ``n`` chained blocks: its segment exists, so the
    next append goes to it (and syncs off the loop)."""
    store = BlockStore.open(tmp_path / "l")
    blocks = make_blocks(n)
    store.append(blocks[0])
    return store, blocks


def _stored_hashes(path: Path) -> list[bytes]:
    """The block hashes a fresh open of the ledger finds (what survived)."""
    with BlockStore.open(path) as again:
        return [again.get(h).hash for h in range(again.height + 1)]


def test_event_loop_keeps_running_while_fsync_stalls(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The fdatasync of an append does not return until the event loop has ticked ten
    times while it was stalled: if the sync blocked the loop, it would never be released
    (and the test would fail on the 60 s safety limit, not on how fast this machine is)."""
    store, blocks = _genesis_only(tmp_path, 2)
    real = os.fdatasync
    entered = threading.Event()
    release = threading.Event()

    def stalled(fd: int) -> None:
        entered.set()
        if not release.wait(60):
            raise OSError(errno.EIO, "event loop did not run while the sync was stalled")
        real(fd)

    monkeypatch.setattr("agent.storage.store.os.fdatasync", stalled)

    async def go() -> list[int]:
        seen: list[int] = []

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.01)
                if entered.is_set() and not release.is_set():
                    seen.append(store.height)
                    if len(seen) >= 10:
                        release.set()

        t = asyncio.create_task(ticker())
        await store.append_async(blocks[1])
        t.cancel()
        return seen

    seen = asyncio.run(go())
    assert len(seen) >= 10  # polls ran during the stall
    assert set(seen) == {0}  # readers never saw the block before it was durable
    assert store.height == 1 and store.get(1).hash == blocks[1].hash
    store.close()
    with BlockStore.open(tmp_path / "l") as again:
        assert again.height == 1


def test_blocks_written_during_a_sync_share_the_next_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, blocks = _genesis_only(tmp_path, 8)
    gate = threading.Event()
    calls = _sync_with(monkeypatch, stall_s=0.0, gate=gate)
    published: list[tuple[int, int]] = []  # (block, store height when its future was done)

    async def go() -> None:
        first = store.submit([blocks[1]])
        await _until(lambda: len(calls) == 1)  # the sync thread is inside the first sync
        futs = [store.submit([b]) for b in blocks[2:]]
        assert store.tip is not None and store.tip.height == 7
        assert store.height == 0 and store.in_flight == 7
        for i, f in enumerate([first, *futs], start=1):
            f.add_done_callback(lambda _f, i=i: published.append((i, store.height)))
        gate.set()
        await asyncio.gather(first, *futs)

    asyncio.run(go())
    assert len(calls) == 2  # one sync for block 1, one for the six written during it
    assert published == [(i, 1 if i == 1 else 7) for i in range(1, 8)]
    assert store.height == 7 and store.in_flight == 0
    store.close()
    assert _stored_hashes(tmp_path / "l") == [b.hash for b in blocks[:8]]


def test_enospc_during_the_sync_cuts_off_everything_in_flight(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, blocks = _genesis_only(tmp_path, 4)
    size_before = store.disk_usage()
    seg_file = next((tmp_path / "l" / "segments").glob("*.seg"))
    seg_bytes = seg_file.stat().st_size
    gate = threading.Event()
    calls = _sync_with(monkeypatch, stall_s=0.0, fail=lambda n: n == 1, gate=gate)

    async def go() -> list[BaseException | None]:
        f1 = store.submit([blocks[1]])
        await _until(lambda: len(calls) == 1)
        f2 = store.submit([blocks[2]])  # written after the failing sync started
        gate.set()
        out = await asyncio.gather(f1, f2, return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in out]

    errors = asyncio.run(go())
    assert all(isinstance(e, StoreFullError) for e in errors)
    assert store.height == 0 and store.tip == store.head and store.in_flight == 0
    assert store.disk_usage() == size_before and seg_file.stat().st_size == seg_bytes
    asyncio.run(store.append_many_async(blocks[1:4]))  # space is back
    assert store.height == 3
    store.close()
    assert _stored_hashes(tmp_path / "l") == [b.hash for b in blocks[:4]]


def test_failed_write_leaves_the_blocks_in_flight_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, blocks = _genesis_only(tmp_path, 3)
    gate = threading.Event()
    _sync_with(monkeypatch, stall_s=0.0, gate=gate)
    import agent.storage.store as store_mod

    real_write = store_mod.write_all
    writes: list[int] = []

    def write_all(fd: int, buf: bytes) -> None:
        writes.append(len(buf))
        if len(writes) == 2:  # half of the second block's write, then the disk is full
            os.write(fd, buf[: len(buf) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fd, buf)

    monkeypatch.setattr(store_mod, "write_all", write_all)

    async def go() -> None:
        f1 = store.submit([blocks[1]])
        with pytest.raises(StoreFullError):
            store.submit([blocks[2]])
        assert store.tip is not None and store.tip.height == 1  # block 1 is still coming
        assert not f1.done()
        gate.set()
        await f1

    asyncio.run(go())
    assert store.height == 1
    asyncio.run(store.append_async(blocks[2]))
    store.close()
    assert _stored_hashes(tmp_path / "l") == [b.hash for b in blocks[:3]]


def test_cancelled_while_syncing_the_commit_still_completes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shutdown cancels the sealer mid-fsync: the written record is finished and published
    before the cancellation goes through, so the store stays consistent."""
    store, blocks = _genesis_only(tmp_path, 3)
    gate = threading.Event()
    calls = _sync_with(monkeypatch, stall_s=0.0, gate=gate)

    async def go() -> None:
        task = asyncio.create_task(store.append_async(blocks[1]))
        await _until(lambda: len(calls) == 1)  # mid-fsync
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert store.height == 1 and store.get(1).hash == blocks[1].hash
    store.append(blocks[2])  # the next append lands where it must
    assert store.get(2).hash == blocks[2].hash
    store.close()
    with BlockStore.open(tmp_path / "l") as again:
        assert again.height == 2


def test_sync_append_settles_what_is_in_flight_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, blocks = _genesis_only(tmp_path, 3)
    _sync_with(monkeypatch, stall_s=0.1)

    async def go() -> None:
        fut = store.submit([blocks[1]])
        with pytest.raises(ChainError):
            store.append(blocks[1])  # block 1 is in the store once what is in flight is
        store.append(blocks[2])  # waits for block 1, then appends block 2
        assert fut.done() and store.height == 2

    asyncio.run(go())
    store.close()
    assert _stored_hashes(tmp_path / "l") == [b.hash for b in blocks[:3]]


def test_close_settles_blocks_in_flight(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    store, blocks = _genesis_only(tmp_path, 3)
    _sync_with(monkeypatch, stall_s=0.1)

    async def go() -> None:
        store.submit([blocks[1]])
        store.submit([blocks[2]])
        store.close()  # e.g. the agent stopping: what was written becomes durable

    asyncio.run(go())
    assert store.height == 2
    with BlockStore.open(tmp_path / "l") as again:
        assert again.height == 2


@pytest.mark.parametrize("delay", [0.0, 2.0])
def test_group_commit_delay_gathers_the_blocks_that_follow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delay: float) -> None:
    """With a commit delay the sync thread waits for more blocks before it syncs: five
    blocks written 10 ms apart (50 ms in all, far below the 2 s delay on any machine)
    share one fdatasync. Without, the sync of a lone block starts at once, with no other
    block to wait for: five blocks each written once the previous one's sync began get
    five syncs."""
    store = BlockStore.open(tmp_path / "l", options=StoreOptions(group_commit_delay_s=delay))
    blocks = make_blocks(6)
    store.append(blocks[0])
    syncs_before = store.syncs
    calls = _sync_with(monkeypatch, stall_s=0.0)

    async def go() -> None:
        futs = []
        for k, b in enumerate(blocks[1:], start=1):
            futs.append(store.submit([b]))
            if delay:
                await asyncio.sleep(0.01)
                assert store.height == 0  # nothing is durable before the delay is over
            else:
                await _until(lambda k=k: len(calls) >= k)  # type: ignore[misc]
        await asyncio.gather(*futs)

    asyncio.run(go())
    syncs = store.syncs - syncs_before
    assert syncs == (1 if delay else 5)
    store.close()
    assert _stored_hashes(tmp_path / "l") == [b.hash for b in blocks]


@pytest.mark.parametrize("seed", [7, 8, 9, 10])
def test_random_failures_never_lose_or_invent_a_durable_block(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """Many submits in flight over small segments while writes and syncs fail at random
    (ENOSPC, partial writes), with synchronous appends and drains mixed in: every block
    reported durable is in the reopened store at its height, nothing else is, and the
    chain verifies."""
    import random

    import agent.storage.store as store_mod
    from ledger import verify_chain

    rng = random.Random(seed)
    real_sync, real_write = os.fdatasync, store_mod.write_all

    def flaky_sync(fd: int) -> None:
        time.sleep(rng.uniform(0, 0.002))
        if rng.random() < 0.08:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_sync(fd)

    def flaky_write(fd: int, buf: bytes) -> None:
        if rng.random() < 0.04:
            os.write(fd, buf[: rng.randrange(len(buf))])
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fd, buf)

    monkeypatch.setattr("agent.storage.store.os.fdatasync", flaky_sync)
    monkeypatch.setattr(store_mod, "write_all", flaky_write)
    store = BlockStore.open(tmp_path / "l", options=StoreOptions(
        segment_bytes=40 * 1024, group_commit_delay_s=0.0005))
    durable: dict[int, bytes] = {}
    failures = {"submit": 0, "future": 0, "sync append": 0}

    def record(block: Block) -> Callable[[asyncio.Future[None]], None]:
        def done(f: asyncio.Future[None]) -> None:
            if f.exception() is None:
                assert block.height not in durable  # a height is made durable once
                durable[block.height] = block.hash
                assert store.height >= block.height  # visible once durable
            else:
                assert isinstance(f.exception(), StoreFullError)
                failures["future"] += 1
        return done

    async def go() -> None:
        pending: list[asyncio.Future[None]] = []
        for _ in range(400):
            roll = rng.random()
            if roll < 0.05:  # a synchronous append links onto what is durable
                store.drain()
            tip = store.tip
            block = make_blocks(1, prev=tip.header if tip else None,
                                meters=rng.randint(1, 3))[0]
            try:
                if roll < 0.05:
                    store.append(block)
                    durable[block.height] = block.hash
                else:
                    fut = store.submit([block])
                    fut.add_done_callback(record(block))
                    pending.append(fut)
            except StoreFullError:
                failures["sync append" if roll < 0.05 else "submit"] += 1
            if roll > 0.97:
                store.drain()
            await asyncio.sleep(rng.choice((0, 0, 0.001)))
        await asyncio.gather(*pending, return_exceptions=True)

    asyncio.run(go())
    assert store.in_flight == 0 and store.tip == store.head
    assert failures["submit"] and failures["future"], failures  # both kinds happened
    head = store.height
    store.close()
    monkeypatch.undo()
    with BlockStore.open(tmp_path / "l") as again:
        blocks = [again.get(h) for h in range(again.height + 1)]
    verify_chain(blocks)
    assert head == max(durable) == len(blocks) - 1
    assert {h: b.hash for h, b in enumerate(blocks)} == durable
