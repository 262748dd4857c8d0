"""Retention on a real block store: blocks go only when every required replica has
acknowledged them and they are older than the minimum age; nothing else is ever pruned."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.service.config import RetentionConfig
from agent.storage.retention import Retention
from agent.storage.state import StateDB
from agent.storage.store import BlockStore, StoreOptions
from ledger import Block, ChainHead, ChainVerifier, verify_block
from tests.support.store import make_blocks

BLOCKS = 40
SEGMENT = 16 * 1024  # small segments so that pruning has whole segments to drop


@pytest.fixture
def store(tmp_path: Path) -> BlockStore:
    s = BlockStore.open(tmp_path / "ledger",
                        options=StoreOptions(segment_bytes=SEGMENT, fsync=False))
    for block in make_blocks(BLOCKS, meters=4):  # one append per block, as the agent does
        s.append(block)
    assert s.segment_count >= 4
    yield s
    s.close()


@pytest.fixture
def state(tmp_path: Path) -> StateDB:
    db = StateDB(tmp_path / "state.json", fsync=False)
    yield db
    db.close()


def _end_ms(store: BlockStore, height: int) -> int:
    return store.get(height).header.time_end_ms


def _retention(store: BlockStore, state: StateDB, required: list[str], *, budget: int,
               min_age_s: float, now_ms: int) -> Retention:
    cfg = RetentionConfig(disk_budget_bytes=budget, min_age_s=min_age_s)
    return Retention(cfg, store, state, required, wall=lambda: now_ms / 1000)


def _assert_intact_from(store: BlockStore, first: int) -> None:
    """Blocks ``first``..head are all still stored, valid and linked."""
    assert store.first_height <= first
    records = list(store.iter_records(store.first_height, store.height + 1))
    oldest = Block.decode(records[0])
    v = ChainVerifier(head=ChainHead(oldest.header, verify_block(oldest)))
    for rec in records[1:]:
        v.add_record(rec)
    assert v.head is not None and v.head.height == BLOCKS - 1


def test_under_budget_nothing_is_pruned(store: BlockStore, state: StateDB) -> None:
    state.set_cursor("utility", BLOCKS - 1)
    r = _retention(store, state, ["utility"], budget=store.disk_usage() + 1, min_age_s=0,
                   now_ms=_end_ms(store, BLOCKS - 1) + 10**9)
    st = r.check()
    assert store.first_height == 0 and st.pruned_bytes == 0 and not st.over_budget


def test_prunes_only_what_every_required_replica_acknowledged(
        store: BlockStore, state: StateDB) -> None:
    state.set_cursor("utility", 25)
    state.set_cursor("coop", 12)   # the slowest required replica decides
    state.set_cursor("hobby", -1)  # optional: never holds anything back
    used = store.disk_usage()
    r = _retention(store, state, ["utility", "coop"], budget=64 * 1024 if used > 64 * 1024
                   else used // 2, min_age_s=0, now_ms=_end_ms(store, BLOCKS - 1) + 10**9)
    st = r.check()
    assert st.pruned_bytes > 0 and store.disk_usage() < used
    assert 0 < store.first_height <= 13          # nothing above coop's cursor went
    _assert_intact_from(store, 13)
    # still over budget because the rest is unacknowledged: critical, naming the laggard
    assert st.over_budget and st.problem is not None and "coop (acked 12)" in st.problem


def test_unacknowledged_blocks_are_never_pruned(store: BlockStore, state: StateDB) -> None:
    r = _retention(store, state, ["utility"], budget=1, min_age_s=0,
                   now_ms=_end_ms(store, BLOCKS - 1) + 10**9)
    st = r.check()
    assert store.first_height == 0 and st.pruned_bytes == 0
    assert st.over_budget and "utility (acked -1)" in (st.problem or "")


def test_young_blocks_stay_even_when_acknowledged(store: BlockStore, state: StateDB) -> None:
    state.set_cursor("utility", BLOCKS - 1)
    # blocks end 15 min apart: with min_age 5 s, blocks 0..19 are old and 20.. young
    now_ms = _end_ms(store, 20) + 1000
    r = _retention(store, state, ["utility"], budget=1, min_age_s=5.0, now_ms=now_ms)
    st = r.check()
    assert st.pruned_bytes > 0 and 0 < store.first_height <= 20
    _assert_intact_from(store, 20)
    assert st.over_budget and "younger than min_age_s" in (st.problem or "")


def test_pruned_store_reopens_and_keeps_its_head(tmp_path: Path, store: BlockStore,
                                                 state: StateDB) -> None:
    state.set_cursor("utility", BLOCKS - 1)
    head = store.head
    r = _retention(store, state, ["utility"], budget=1, min_age_s=0,
                   now_ms=_end_ms(store, BLOCKS - 1) + 10**9)
    r.check()
    first = store.first_height
    assert first > 0
    store.close()
    with BlockStore.open(tmp_path / "ledger") as again:
        assert again.first_height == first and again.head == head


def test_pruning_past_an_optional_replica_is_said_loudly(
        store: BlockStore, state: StateDB, caplog: pytest.LogCaptureFixture) -> None:
    """With no required replica blocks go by age and budget; an optional replica that had
    not acknowledged them is named in a warning, never dropped silently."""
    state.set_cursor("hobby", 5)
    cfg = RetentionConfig(disk_budget_bytes=1, min_age_s=0)
    now_ms = _end_ms(store, BLOCKS - 1) + 10**9
    r = Retention(cfg, store, state, [], optional=["hobby"], wall=lambda: now_ms / 1000)
    with caplog.at_level("INFO", logger="meterchain.retention"):
        r.check()
    first = store.first_height
    assert first > 6
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelname == "WARNING"]
    assert any(f"pruned blocks 6..{first - 1} before optional replica hobby" in w
               for w in warnings), warnings
    assert any("no replica is required" in rec.getMessage() for rec in caplog.records)


def test_a_full_disk_prunes_acknowledged_old_blocks_below_the_budget(
        store: BlockStore, state: StateDB) -> None:
    """While the disk is full the same rule holds, budget or not: acknowledged and old
    blocks go, the rest stays."""
    state.set_cursor("utility", 25)
    full = [False]
    cfg = RetentionConfig(disk_budget_bytes=store.disk_usage() * 10, min_age_s=0)
    r = Retention(cfg, store, state, ["utility"], disk_full=lambda: full[0],
                  wall=lambda: (_end_ms(store, BLOCKS - 1) + 10**9) / 1000)
    assert r.check().pruned_bytes == 0 and store.first_height == 0
    full[0] = True
    st = r.check()
    assert st.pruned_bytes > 0 and not st.over_budget
    assert 0 < store.first_height <= 26
    _assert_intact_from(store, 26)
