"""append_async: the commit's fsync waits off the event loop, the block is visible only
once durable, and a failed sync is undone. The slow or failing fsync is injected into
the real store's calls."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from pathlib import Path

import pytest

from agent.errors import StoreError, StoreFullError
from agent.store import BlockStore
from tests.support.store import make_blocks

STALL_S = 0.3


def _slow_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.fdatasync

    def slow(fd: int) -> None:
        time.sleep(STALL_S)
        real(fd)

    monkeypatch.setattr("agent.store.os.fdatasync", slow)


def test_event_loop_keeps_running_while_fsync_stalls(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlockStore.open(tmp_path / "l")
    blocks = make_blocks(2)
    store.append(blocks[0])  # the segment exists; the next append goes to it
    _slow_sync(monkeypatch)  # an SD card stalling

    async def go() -> tuple[int, list[int]]:
        ticks = 0
        seen: list[int] = []

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
                seen.append(store.height)

        t = asyncio.create_task(ticker())
        await store.append_async(blocks[1])
        t.cancel()
        return ticks, seen

    ticks, seen = asyncio.run(go())
    assert ticks >= 10  # polls would have run during the stall
    assert set(seen) == {0}  # readers never saw the block before it was durable
    assert store.height == 1 and store.get(1).hash == blocks[1].hash
    store.close()
    with BlockStore.open(tmp_path / "l") as again:
        assert again.height == 1


def test_only_one_append_in_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlockStore.open(tmp_path / "l")
    blocks = make_blocks(3)
    store.append(blocks[0])
    _slow_sync(monkeypatch)

    async def go() -> None:
        first = asyncio.create_task(store.append_async(blocks[1]))
        await asyncio.sleep(0.05)
        with pytest.raises(StoreError, match="in flight"):
            await store.append_async(blocks[2])
        await first

    asyncio.run(go())
    assert store.height == 1
    store.close()


def test_enospc_during_the_sync_is_undone(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlockStore.open(tmp_path / "l")
    blocks = make_blocks(2)
    store.append(blocks[0])
    size_before = store.disk_usage()
    real = os.fdatasync
    calls = []

    def full(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr("agent.store.os.fdatasync", full)
    with pytest.raises(StoreFullError):
        asyncio.run(store.append_async(blocks[1]))
    assert store.height == 0 and store.disk_usage() == size_before
    asyncio.run(store.append_async(blocks[1]))  # space is back
    assert store.height == 1
    store.close()
    with BlockStore.open(tmp_path / "l") as again:
        assert again.height == 1 and again.get(1).hash == blocks[1].hash


def test_cancelled_while_syncing_the_commit_still_completes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shutdown cancels the sealer mid-fsync: the written record is finished and published
    before the cancellation goes through, so the store stays consistent."""
    store = BlockStore.open(tmp_path / "l")
    blocks = make_blocks(3)
    store.append(blocks[0])
    _slow_sync(monkeypatch)

    async def go() -> None:
        task = asyncio.create_task(store.append_async(blocks[1]))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert store.height == 1 and store.get(1).hash == blocks[1].hash
    store.append(blocks[2])  # the next append lands where it must
    assert store.get(2).hash == blocks[2].hash
    store.close()
    with BlockStore.open(tmp_path / "l") as again:
        assert again.height == 2


def test_sync_append_refused_while_an_async_one_is_in_flight(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlockStore.open(tmp_path / "l")
    blocks = make_blocks(3)
    store.append(blocks[0])
    _slow_sync(monkeypatch)

    async def go() -> None:
        task = asyncio.create_task(store.append_async(blocks[1]))
        await asyncio.sleep(0.05)
        with pytest.raises(StoreError, match="in flight"):
            store.append(blocks[2])
        await task

    asyncio.run(go())
    assert store.height == 1
    store.close()
