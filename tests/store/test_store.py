"""BlockStore: append/get/iterate, links, segments, index, pruning, torn tails, damage, ENOSPC."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ledger
from agent.storage import store
from agent.storage.store import BlockStore, StoreOptions
from ledger.errors import (
    BrokenLinkError,
    ChainError,
    HeightError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
)
from tests.support.store import make_blocks

SMALL = StoreOptions(segment_bytes=16 * 1024)


def test_empty_store_is_created_and_reopens(tmp_path: Path) -> None:
    d = tmp_path / "ledger"
    with BlockStore.open(d) as s:
        assert s.height == -1 and s.head is None and s.first_height == 0
    assert (d / "FORMAT").read_bytes() == store.FORMAT_TEXT
    with BlockStore.open(d) as s:
        assert s.height == -1
        with pytest.raises(StoreError, match="not in the store"):
            s.get(0)


def test_append_get_iterate_and_reopen(tmp_path: Path) -> None:
    blocks = make_blocks(10)
    with BlockStore.open(tmp_path) as s:
        s.append(blocks[0])
        s.append_many(blocks[1:6])
        for b in blocks[6:]:
            s.append(b)
        assert s.height == 9
        assert s.head is not None and s.head.hash == blocks[9].hash
    with BlockStore.open(tmp_path) as s:
        assert s.height == 9 and s.head is not None and s.head.hash == blocks[9].hash
        assert [s.get(h) for h in range(10)] == blocks
        assert s.get_record(4) == blocks[4].encode()
        assert list(s.iter_records(3, 7)) == [b.encode() for b in blocks[3:7]]
        assert list(s.iter_records(0)) == [b.encode() for b in blocks]
        assert ledger.verify_chain(s.get(h) for h in range(10)) is not None


def test_append_refuses_blocks_that_do_not_link(tmp_path: Path) -> None:
    blocks = make_blocks(4)
    other = make_blocks(2, seed=bytes(32))
    with BlockStore.open(tmp_path) as s:
        with pytest.raises(HeightError):
            s.append(blocks[1])  # not genesis
        s.append_many(blocks[:2])
        with pytest.raises(HeightError):
            s.append(blocks[3])  # gap
        with pytest.raises(HeightError):
            s.append(blocks[1])  # repeat
        with pytest.raises(ChainError):
            s.append(other[1])  # other key, other prev hash
        with pytest.raises(HeightError):
            s.append_many([blocks[2], blocks[2]])  # second does not follow the first
        assert s.height == 1
    with BlockStore.open(tmp_path) as s:  # nothing of the refused batches reached the disk
        assert s.height == 1
        s.append(blocks[2])


def test_forged_prev_hash_is_refused(tmp_path: Path) -> None:
    blocks = make_blocks(2)
    h = blocks[1].header
    forged = ledger.Block(
        ledger.Header(h.version, h.payload_encoding, h.gateway_key, h.height, bytes(32),
                      h.time_start_ms, h.time_end_ms, h.reading_count, h.merkle_root,
                      h.payload_hash, h.recipient_key),
        blocks[1].signature, blocks[1].payload)
    with BlockStore.open(tmp_path) as s:
        s.append(blocks[0])
        with pytest.raises(BrokenLinkError):
            s.append(forged)


def test_second_writer_is_refused_but_readers_are_not(tmp_path: Path) -> None:
    with BlockStore.open(tmp_path) as s:
        s.append(make_blocks(1)[0])
        with pytest.raises(StoreError, match="in use"):
            BlockStore.open(tmp_path)
        with BlockStore.open(tmp_path, options=StoreOptions(read_only=True)) as r:
            assert r.height == 0
            with pytest.raises(StoreError, match="read-only"):
                r.append(make_blocks(2)[1])


def test_not_a_ledger(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")
    with pytest.raises(StoreError, match="not a ledger"):
        BlockStore.open(tmp_path)
    with pytest.raises(StoreError, match="no such ledger"):
        BlockStore.open(tmp_path / "missing", options=StoreOptions(create=False))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "FORMAT").write_text("something else\n")
    with pytest.raises(StoreError, match="not a ledger this version"):
        BlockStore.open(tmp_path / "other")


def test_records_are_padded_to_pages_and_framed(tmp_path: Path) -> None:
    blocks = make_blocks(3)
    with BlockStore.open(tmp_path) as s:
        for b in blocks:
            s.append(b)
    seg = tmp_path / "segments" / "00000000000000000000.seg"
    data = seg.read_bytes()
    assert len(data) % 4096 == 0
    assert data[:24] == b"MCSEG002" + (0).to_bytes(8, "big") + (4096).to_bytes(4, "big") + bytes(4)
    rec = blocks[0].encode()
    assert data[24:24 + 8 + len(rec)] == store.frame(rec)


def write_v1_segment(path: Path, first: int, batches: list[list[ledger.Block]],
                     align: int) -> None:
    """A segment as version 1 wrote it: 16-byte header, each append padded to ``align``."""
    data = bytearray(b"MCSEG001" + first.to_bytes(8, "big"))
    for batch in batches:
        for b in batch:
            data += store.frame(b.encode())
        data += bytes(-len(data) % align)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("align", [4096, 512, 1])
def test_version_1_segments_are_still_read_and_new_segments_record_their_alignment(
        tmp_path: Path, align: int) -> None:
    blocks = make_blocks(40, meters=2)
    (tmp_path / "segments").mkdir()
    (tmp_path / "FORMAT").write_bytes(store.FORMAT_TEXT)
    write_v1_segment(tmp_path / "segments" / "00000000000000000000.seg", 0,
                     [blocks[:3], blocks[3:4], blocks[4:8]], align)
    opts = StoreOptions(segment_bytes=16 * 1024, align=align)
    with BlockStore.open(tmp_path, options=opts) as s:
        assert s.height == 7 and [s.get(h) for h in range(8)] == blocks[:8]
        for b in blocks[8:]:
            s.append(b)  # goes on in the version-1 segment, then rolls over
        assert s.segment_count > 1
    segs = sorted((tmp_path / "segments").glob("*.seg"))
    assert segs[0].read_bytes()[:8] == b"MCSEG001"
    for seg in segs[1:]:
        head = seg.read_bytes()[:24]
        assert head[:8] == b"MCSEG002" and int.from_bytes(head[16:20], "big") == align
    for p in (tmp_path / "segments").glob("*.idx"):
        p.unlink()  # every record is found again from the segment headers alone
    with BlockStore.open(tmp_path, options=opts) as s:
        assert [s.get(h) for h in range(40)] == blocks


def test_a_segment_keeps_the_alignment_it_records(tmp_path: Path) -> None:
    blocks = make_blocks(6)
    with BlockStore.open(tmp_path, options=StoreOptions(align=512)) as s:
        s.append_many(blocks[:2])
    with BlockStore.open(tmp_path, options=StoreOptions(align=4096)) as s:
        s.append_many(blocks[2:4])  # same segment: still padded to 512
    seg = tmp_path / "segments" / "00000000000000000000.seg"
    assert seg.stat().st_size % 512 == 0 and seg.stat().st_size % 4096 != 0
    (tmp_path / "segments" / "00000000000000000000.idx").unlink()
    with BlockStore.open(tmp_path, options=StoreOptions(align=4096)) as s:
        assert [s.get(h) for h in range(4)] == blocks[:4]


def test_a_bad_segment_header_is_corruption(tmp_path: Path) -> None:
    with BlockStore.open(tmp_path) as s:
        s.append_many(make_blocks(2))
    seg = tmp_path / "segments" / "00000000000000000000.seg"
    for bad in (b"MCSEG003", b"MCSEG002" + bytes(8) + bytes(4)):  # unknown; alignment 0
        data = bytearray(seg.read_bytes())
        data[: len(bad)] = bad
        seg.write_bytes(bytes(data))
        with pytest.raises(StoreCorruptError):
            BlockStore.open(tmp_path, options=StoreOptions(read_only=True))


def test_segments_roll_over_and_are_found_by_height(tmp_path: Path) -> None:
    blocks = make_blocks(60, meters=2)  # ~1 KiB records in 4 KiB pages
    with BlockStore.open(tmp_path, options=SMALL) as s:
        for b in blocks[:40]:
            s.append(b)
        s.append_many(blocks[40:])
        assert s.segment_count > 5
        assert s.disk_usage() == sum(p.stat().st_size for p in tmp_path.rglob("*")
                                     if p.is_file())
    with BlockStore.open(tmp_path, options=SMALL) as s:
        assert s.height == 59
        for h in (0, 3, 4, 5, 17, 33, 59):
            assert s.get(h) == blocks[h]
        assert list(s.iter_records(2)) == [b.encode() for b in blocks[2:]]


def test_open_scans_only_the_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = make_blocks(40, meters=2)
    with BlockStore.open(tmp_path, options=SMALL) as s:
        for b in blocks:
            s.append(b)
    scanned: list[int] = []
    real = store.next_frame

    def counting(data: bytes, pos: int, align: int, base: int = 0) -> tuple[int, int] | None:
        scanned.append(base + pos)
        return real(data, pos, align, base)

    monkeypatch.setattr(store, "next_frame", counting)
    with BlockStore.open(tmp_path, options=SMALL) as s:
        assert s.height == 39
    assert len(scanned) <= 3  # the last indexed record, then the clean end


def test_damaged_index_of_a_sealed_segment_is_rebuilt(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    blocks = make_blocks(30, meters=2)
    with BlockStore.open(tmp_path, options=SMALL) as s:
        for b in blocks:
            s.append(b)
    idx = tmp_path / "segments" / "00000000000000000000.idx"
    idx.write_bytes(idx.read_bytes()[:-8])  # lose the last entry
    with caplog.at_level(logging.WARNING), BlockStore.open(tmp_path, options=SMALL) as s:
        assert s.get(2) == blocks[2]
        assert "rebuilding" in caplog.text
    with BlockStore.open(tmp_path, options=SMALL) as s:
        assert [s.get(h) for h in range(30)] == blocks


def test_torn_tail_is_dropped_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocks = make_blocks(6)
    with BlockStore.open(tmp_path) as s:
        s.append_many(blocks[:5])
    seg = tmp_path / "segments" / "00000000000000000000.seg"
    partial = store.frame(blocks[5].encode())[:-7]
    with open(seg, "ab") as f:
        f.write(partial)
    with caplog.at_level(logging.WARNING), BlockStore.open(tmp_path) as s:
        assert s.height == 4
        assert "dropping torn tail" in caplog.text
        s.append(blocks[5])
    with BlockStore.open(tmp_path) as s:
        assert s.height == 5 and s.get(5) == blocks[5]


def test_damage_before_good_records_is_refused_not_truncated(tmp_path: Path) -> None:
    blocks = make_blocks(6)
    with BlockStore.open(tmp_path, options=StoreOptions(align=1)) as s:
        s.append_many(blocks)
    seg = tmp_path / "segments" / "00000000000000000000.seg"
    data = bytearray(seg.read_bytes())
    data[24 + len(store.frame(blocks[0].encode())) + 300] ^= 0x40  # inside block 1
    seg.write_bytes(bytes(data))
    (tmp_path / "segments" / "00000000000000000000.idx").unlink()
    with pytest.raises(StoreCorruptError, match="refusing to truncate"):
        BlockStore.open(tmp_path)
    assert seg.read_bytes() == bytes(data)  # nothing cut off


def test_damage_in_a_sealed_segment_is_reported(tmp_path: Path) -> None:
    blocks = make_blocks(30, meters=2)
    with BlockStore.open(tmp_path, options=SMALL) as s:
        for b in blocks:
            s.append(b)
    seg = tmp_path / "segments" / "00000000000000000000.seg"
    data = bytearray(seg.read_bytes())
    data[200] ^= 1  # inside the payload of block 0
    seg.write_bytes(bytes(data))
    with BlockStore.open(tmp_path, options=SMALL) as s:
        with pytest.raises(StoreCorruptError, match="damaged"):
            s.get(0)
        with pytest.raises(StoreCorruptError):
            list(s.iter_records(0))
        assert s.get(29) == blocks[29]


def test_prune_drops_whole_old_segments(tmp_path: Path) -> None:
    blocks = make_blocks(60, meters=2)
    with BlockStore.open(tmp_path, options=SMALL) as s:
        for b in blocks:
            s.append(b)
        before = s.disk_usage()
        nseg = s.segment_count
        assert s.prune_before(0) == 0
        freed = s.prune_before(30)
        assert freed > 0 and s.disk_usage() == before - freed
        assert 0 < s.first_height <= 30 and s.segment_count < nseg
        with pytest.raises(StoreError, match="pruned"):
            s.get(0)
        assert s.get(30) == blocks[30]
        s.prune_before(10**6)  # never deletes the last segment
        assert s.segment_count == 1 and s.height == 59
        first = s.first_height
    with BlockStore.open(tmp_path, options=SMALL) as s:
        assert s.first_height == first and s.height == 59
        assert list(s.iter_records(first)) == [b.encode() for b in blocks[first:]]
        s.append(make_blocks(1, prev=blocks[59].header)[0])


def test_budget_full_keeps_the_store_consistent(tmp_path: Path) -> None:
    blocks = make_blocks(10)
    opts = StoreOptions(max_bytes=6 * 4096)
    with BlockStore.open(tmp_path, options=opts) as s:
        n = 0
        with pytest.raises(StoreFullError, match="budget"):
            for b in blocks:
                s.append(b)
                n += 1
        assert s.height == n - 1 and n >= 3
    with BlockStore.open(tmp_path) as s:
        assert s.height == n - 1
        s.append(blocks[n])


_ENOSPC_SCENARIO = """
import subprocess, sys
from pathlib import Path
import ledger
from ledger.errors import StoreFullError
from agent.storage.store import BlockStore
from tests.support.store import make_blocks

mnt = Path(sys.argv[1])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
try:
    blocks = make_blocks(40, meters=3)
    with BlockStore.open(mnt / "l") as s:
        n = 0
        try:
            for b in blocks:
                s.append(b)
                n += 1
        except StoreFullError as exc:
            assert "no space" in str(exc), exc
        else:
            raise AssertionError("the disk never filled up")
        assert 5 <= n < 40 and s.height == n - 1
    with BlockStore.open(mnt / "l") as s:  # reopen: consistent, same head
        assert s.height == n - 1
        assert ledger.verify_chain(s.get(h) for h in range(n)) is not None
        assert s.head is not None and s.head.hash == blocks[n - 1].hash
    print("full after", n)
finally:
    subprocess.run(["umount", str(mnt)], check=True)
"""


def test_enospc_on_a_small_filesystem_is_undone(tmp_path: Path) -> None:
    """A real 64 KiB tmpfs that fills up: StoreFullError, nothing half-written after reopen.

    Mounting needs root; elsewhere the scenario runs in a user+mount namespace.
    """
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "enospc.py"
    script.write_text(_ENOSPC_SCENARIO)
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, str(script), str(mnt)]
    if os.geteuid() != 0:
        cmd = ["unshare", "--user", "--map-root-user", "--mount", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("full after")


def test_short_write_then_enospc_is_cut_back(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk takes half a record, then reports ENOSPC: the half is truncated away."""
    blocks = make_blocks(4)
    with BlockStore.open(tmp_path) as s:
        s.append_many(blocks[:2])
        real_write = os.write
        calls = {"n": 0}

        def failing(fd: int, data: bytes | memoryview) -> int:
            calls["n"] += 1
            if calls["n"] == 1:
                return real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(store.os, "write", failing)
        with pytest.raises(StoreFullError):
            s.append(blocks[2])
        monkeypatch.setattr(store.os, "write", real_write)
        assert s.height == 1
        s.append(blocks[2])  # the store goes on where it was
    with BlockStore.open(tmp_path) as s:
        assert s.height == 2 and s.get(2) == blocks[2]


def test_unfinished_new_segment_is_ignored(tmp_path: Path) -> None:
    blocks = make_blocks(3)
    with BlockStore.open(tmp_path) as s:
        s.append_many(blocks)
    tmp = tmp_path / "segments" / "00000000000000000003.seg.tmp"
    tmp.write_bytes(b"MCSEG001partial")
    with BlockStore.open(tmp_path) as s:
        assert s.height == 2
    assert not tmp.exists()


def test_copy_of_a_ledger_opens_elsewhere(tmp_path: Path) -> None:
    blocks = make_blocks(5)
    with BlockStore.open(tmp_path / "a") as s:
        s.append_many(blocks)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    with BlockStore.open(tmp_path / "b") as s:
        assert s.get(4) == blocks[4]


def test_read_only_open_ignores_a_torn_tail_without_touching_it(tmp_path: Path) -> None:
    blocks = make_blocks(4)
    with BlockStore.open(tmp_path) as s:
        s.append_many(blocks[:3])
    seg = tmp_path / "segments" / "00000000000000000000.seg"
    with open(seg, "ab") as f:
        f.write(store.frame(blocks[3].encode())[:100])  # a writer mid-append
    before = seg.read_bytes()
    with BlockStore.open(tmp_path, options=StoreOptions(read_only=True)) as r:
        assert r.height == 2
        assert list(r.iter_records(0)) == [b.encode() for b in blocks[:3]]
    assert seg.read_bytes() == before


def test_wrong_entry_inside_a_sealed_index_is_repaired_on_read(tmp_path: Path) -> None:
    blocks = make_blocks(30, meters=2)
    with BlockStore.open(tmp_path, options=SMALL) as s:
        for b in blocks:
            s.append(b)
    idx = tmp_path / "segments" / "00000000000000000000.idx"
    raw = bytearray(idx.read_bytes())
    raw[8:16] = raw[16:24]  # entry 1 now points at block 2's frame
    idx.write_bytes(bytes(raw))
    with BlockStore.open(tmp_path, options=SMALL) as s:
        assert s.get(1) == blocks[1]
        assert s.get(2) == blocks[2]
