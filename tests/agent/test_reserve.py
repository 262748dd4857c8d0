"""The disk reserve on a real small tmpfs: held, released on a full disk (blocks then
leave it free, small state gets it), allocated again once space returns, and given to
the pending readings at a stop."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.storage.reserve import RESERVE_FILE, DiskReserve
from agent.storage.state import StateDB
from agent.storage.store import BlockStore, StoreOptions
from ledger import Block
from ledger.errors import StoreError, StoreFullError
from tests.support.store import make_blocks
from tests.support.tmpfs import fill, free_bytes

RESERVE = 256 << 10  # an eighth of the 2 MiB test filesystem


class Chain:
    """Valid blocks to append one by one."""

    def __init__(self) -> None:
        self.blocks: list[Block] = make_blocks(400)
        self.next = 0

    def append(self, store: BlockStore) -> None:
        store.append(self.blocks[self.next])
        self.next += 1


@pytest.fixture
def ledger_dir(small_fs: Path) -> Path:
    return small_fs / "ledger"


@pytest.fixture
def store(ledger_dir: Path) -> Iterator[BlockStore]:
    s = BlockStore.open(ledger_dir, options=StoreOptions(segment_bytes=64 << 10))
    yield s
    s.close()


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def fill_until_full(store: BlockStore, chain: Chain, filler: Path) -> None:
    """Fill the filesystem, then append until a real ENOSPC refuses a block."""
    fill(filler)
    with pytest.raises(StoreFullError, match="no space left on device"):
        for _ in range(100):
            chain.append(store)


def test_held_reserve_is_allocated_and_not_ledger_data(store: BlockStore,
                                                       ledger_dir: Path) -> None:
    before = free_bytes(ledger_dir)
    reserve = DiskReserve(ledger_dir, RESERVE, store)
    assert reserve.establish() and reserve.held and not reserve.released
    path = ledger_dir / RESERVE_FILE
    assert path.stat().st_size == RESERVE and allocated(path) >= RESERVE
    assert before - free_bytes(ledger_dir) >= RESERVE
    assert store.disk_usage() < RESERVE  # not counted as the ledger's
    assert reserve.establish()  # again: nothing changes, no new space needed
    assert allocated(path) == RESERVE


def test_reserve_larger_than_an_eighth_of_the_filesystem_is_lowered(
        store: BlockStore, ledger_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    reserve = DiskReserve(ledger_dir, 1 << 30, store)
    assert reserve.size == RESERVE
    assert "holding 262144 bytes instead" in caplog.text


def test_full_disk_releases_the_reserve_for_small_state_not_blocks(
        store: BlockStore, ledger_dir: Path) -> None:
    chain = Chain()
    reserve = DiskReserve(ledger_dir, RESERVE, store)
    reserve.establish()
    state = StateDB(ledger_dir.parent / "state.json")
    state.set_cursor("r0", 0)
    filler = ledger_dir.parent / "FILLER"
    fill_until_full(store, chain, filler)
    with pytest.raises(StoreFullError):  # the state file too: nothing is free
        state.set_cursor("r0", 5)
    assert state.cursor("r0") == 0
    assert not list(ledger_dir.parent.glob(".state.json.tmp"))  # no space held by a temp

    # the retry releases the reserve and succeeds
    reserve.write_small(lambda: state.set_cursor("r0", 5), state.path)
    assert state.cursor("r0") == 5 and reserve.released and reserve.releases == 1
    assert not (ledger_dir / RESERVE_FILE).exists()
    assert free_bytes(ledger_dir) >= RESERVE - 64 * 1024

    # blocks do not eat the released reserve: refused before anything is written
    height, usage = store.height, store.disk_usage()
    with pytest.raises(StoreFullError, match="disk reserve is released"):
        chain.append(store)
    assert (store.height, store.disk_usage()) == (height, usage)
    for h in range(6, 40):  # small state keeps fitting
        reserve.write_small(lambda h=h: state.set_cursor("r0", h), state.path)  # type: ignore[misc]
    assert state.cursor("r0") == 39
    assert not reserve.disk_full("again")  # nothing more to release

    # short of twice the reserve free: stays released
    assert not reserve.check()
    filler.unlink()
    assert reserve.check() and reserve.held and not reserve.released
    assert allocated(ledger_dir / RESERVE_FILE) >= RESERVE
    chain.append(store)  # the floor is lifted
    assert store.height == height + 1
    state.close()


def test_small_write_on_another_filesystem_does_not_release(
        store: BlockStore, ledger_dir: Path, tmp_path: Path) -> None:
    reserve = DiskReserve(ledger_dir, RESERVE, store)
    reserve.establish()
    elsewhere = tmp_path / "elsewhere.json"

    def full() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        reserve.write_small(full, elsewhere)
    assert reserve.held
    with pytest.raises(StoreError, match="broken"):  # not a full disk: raised as it is
        reserve.write_small(lambda: (_ for _ in ()).throw(StoreError("broken")),
                            ledger_dir / "x")
    assert reserve.held


def test_stop_on_a_full_disk_gives_the_reserve_to_pending_blocks(
        store: BlockStore, ledger_dir: Path) -> None:
    chain = Chain()
    reserve = DiskReserve(ledger_dir, RESERVE, store)
    reserve.establish()
    fill_until_full(store, chain, ledger_dir.parent / "FILLER")
    keep = 64 << 10
    reserve.stopping(keep)
    # held until the first refusal at the stop: then released straight into stop mode
    assert reserve.disk_full("a block")
    height = store.height
    with pytest.raises(StoreFullError, match="kept for the cursors and the final status"):
        for _ in range(200):
            chain.append(store)
    # the reserve went to blocks (each append takes at least a 4 KiB page) up to the
    # stop margin, which stayed free
    assert store.height - height >= 30
    assert keep <= free_bytes(ledger_dir) < keep + 16 * 1024
    assert not reserve.check()  # never re-established while stopping


def test_no_room_for_the_reserve_at_start_holds_blocks_back(
        store: BlockStore, ledger_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    chain = Chain()
    chain.append(store)
    filler = ledger_dir.parent / "FILLER"
    fill(filler)
    reserve = DiskReserve(ledger_dir, RESERVE, store)
    assert not reserve.establish() and reserve.released
    assert "no room for the disk reserve" in caplog.text
    assert not (ledger_dir / RESERVE_FILE).exists()
    with pytest.raises(StoreFullError):
        chain.append(store)
    filler.unlink()
    assert reserve.check()
    chain.append(store)


def test_zero_disables_the_reserve(store: BlockStore, ledger_dir: Path) -> None:
    reserve = DiskReserve(ledger_dir, 0, store)
    assert not reserve.establish()
    assert not reserve.released and not reserve.held
    assert not reserve.disk_full("a block")
    assert not (ledger_dir / RESERVE_FILE).exists()


def test_a_reserve_removed_by_hand_is_allocated_again(store: BlockStore,
                                                      ledger_dir: Path) -> None:
    reserve = DiskReserve(ledger_dir, RESERVE, store)
    reserve.establish()
    (ledger_dir / RESERVE_FILE).unlink()
    assert reserve.check() and reserve.held
    assert allocated(ledger_dir / RESERVE_FILE) >= RESERVE


def test_a_reserve_that_cannot_be_made_is_not_a_full_disk(
        store: BlockStore, ledger_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    (ledger_dir / RESERVE_FILE).mkdir()  # in the way: not a file
    reserve = DiskReserve(ledger_dir, RESERVE, store)
    assert not reserve.establish()
    assert "running without one" in caplog.text
    assert not reserve.released and reserve.size == 0
    Chain().append(store)  # blocks are not held back
    assert not reserve.check()


def test_default_reserve_holds_the_default_pending_readings_of_30_character_ids() -> None:
    """What docs/agent.md promises: at a stop on a full disk, the default reserve takes
    the default sealing.max_pending_readings, sealed in blocks of the default size, with
    the stop margin (status and state files of 16 KiB each assumed) left free."""
    import nacl.signing

    from agent.service.config import RetentionConfig, SealingConfig
    from agent.service.daemon import STOP_KEEP_FREE
    from ledger import Reading, seal_block

    sealing, retention = SealingConfig(), RetentionConfig()
    per_block = sealing.max_readings
    readings = [Reading.make("m" * 30, "1-0:1.8.0", 10**12 + i, 0, "Wh", 1_767_225_600_000 + i)
                for i in range(per_block)]
    block = seal_block(nacl.signing.SigningKey(bytes(32)), None, readings,
                       [bytes(16)] * per_block, readings[0].timestamp_ms,
                       readings[-1].timestamp_ms)
    on_disk = -(-(len(block.encode()) + 8) // 4096) * 4096 + 8  # framed, padded, indexed
    blocks = -(-sealing.max_pending_readings // per_block)
    assert blocks * on_disk + STOP_KEEP_FREE + 2 * (2 * 16 * 1024) <= retention.reserve_bytes
