"""``meterchain verify LEDGER_DIR``: every byte of the segments checks out, or it fails.

A damaged tail, garbage after the last block and a segment holding only its header are
failures (exit 1, ``malformed`` at the chain position), never OK with a warning; and the
reason and height depend on the segment bytes alone, not on which index files exist.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import ledger
from agent.storage import segfile
from agent.storage.dirverify import verify_ledger_dir
from agent.storage.store import BlockStore, StoreOptions
from ledger.errors import ChainError, StoreError
from tests.support.store import make_blocks

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = make_blocks(30, meters=2)
SMALL = StoreOptions(segment_bytes=16 * 1024)
SEG0 = "00000000000000000000.seg"


def mc(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meterchain", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("verify-dir") / "ledger"
    with BlockStore.open(d, options=SMALL) as s:
        for i in range(0, 30, 3):
            s.append_many(BLOCKS[i:i + 3])
    return d


@pytest.fixture
def ledger_copy(built: Path, tmp_path: Path) -> Path:
    d = tmp_path / "copy"
    shutil.copytree(built, d)
    return d


def last_seg(d: Path) -> Path:
    return sorted((d / "segments").glob("*.seg"))[-1]


def failure(d: Path) -> tuple[str, int | None]:
    with pytest.raises(ChainError) as info:
        verify_ledger_dir(d)
    return info.value.reason, info.value.height


def test_a_whole_ledger_verifies(built: Path) -> None:
    result = verify_ledger_dir(built)
    assert result.head is not None and result.head.hash == BLOCKS[-1].hash
    assert result.blocks == 30 and len(list((built / "segments").glob("*.seg"))) >= 3
    p = mc("verify", built)
    assert p.returncode == 0 and "height verified: 29" in p.stdout, p


def test_torn_tail_fails_and_says_so(ledger_copy: Path) -> None:
    extra = make_blocks(1, prev=BLOCKS[-1].header)[0]
    with open(last_seg(ledger_copy), "ab") as f:
        f.write(segfile.frame(extra.encode())[:300])  # a power cut mid-append
    assert failure(ledger_copy) == ("malformed", 30)
    p = mc("verify", ledger_copy)
    assert p.returncode == 1, p
    assert p.stdout.startswith(f"FAILED verifying {ledger_copy} at height 30: malformed: ")
    assert "torn tail" in p.stdout and "Traceback" not in p.stderr
    with BlockStore.open(ledger_copy, options=SMALL) as s:  # the agent drops it on open
        assert s.height == 29
    assert verify_ledger_dir(ledger_copy).blocks == 30


def test_garbage_after_the_last_block_fails(ledger_copy: Path) -> None:
    with open(last_seg(ledger_copy), "ab") as f:
        f.write(b"garbage!")
    assert failure(ledger_copy) == ("malformed", 30)


def test_non_zero_padding_fails(ledger_copy: Path) -> None:
    seg = last_seg(ledger_copy)
    data = bytearray(seg.read_bytes())
    data[-1] = 1  # inside the padding after the last record
    seg.write_bytes(bytes(data))
    assert failure(ledger_copy) == ("malformed", 30)


def test_damaged_last_committed_block_fails_at_its_height(ledger_copy: Path) -> None:
    seg = last_seg(ledger_copy)
    data = bytearray(seg.read_bytes())
    start = segfile.read_index(seg.with_suffix(".idx"))[-1]
    data[start + segfile.FRAME_SIZE + 300] ^= 0x01
    seg.write_bytes(bytes(data))
    assert failure(ledger_copy) == ("malformed", 29)
    p = mc("verify", ledger_copy)
    assert p.returncode == 1 and "at height 29: malformed:" in p.stdout and "CRC-32" in p.stdout


def test_segment_holding_only_its_header_fails(ledger_copy: Path) -> None:
    (ledger_copy / "segments" / f"{segfile.seg_name(30)}.seg").write_bytes(
        segfile.seg_header(30, 4096))
    assert failure(ledger_copy) == ("malformed", 30)


def test_a_missing_middle_segment_is_a_height_gap(ledger_copy: Path) -> None:
    segs = sorted((ledger_copy / "segments").glob("*.seg"))
    segs[1].unlink()
    reason, height = failure(ledger_copy)
    assert reason == "height-mismatch" and height == int(segs[1].stem)


def test_pruned_ledger_starts_from_a_trusted_height(ledger_copy: Path) -> None:
    segs = sorted((ledger_copy / "segments").glob("*.seg"))
    segs[0].unlink()
    segs[0].with_suffix(".idx").unlink()
    result = verify_ledger_dir(ledger_copy)
    assert result.first_height == int(segs[1].stem) and result.head is not None
    assert result.head.height == 29


def _flip_merkle_root_of_genesis_keeping_the_crc(d: Path) -> None:
    seg = d / "segments" / SEG0
    data = bytearray(seg.read_bytes())
    start = segfile.SEG_HEADER_SIZE
    rec = bytearray(data[start + 8 : start + 8 + len(BLOCKS[0].encode())])
    assert bytes(rec) == BLOCKS[0].encode()
    rec[98] ^= 0x01  # merkle_root, first byte
    length = data[start : start + 4]
    crc = zlib.crc32(bytes(rec), zlib.crc32(bytes(length))).to_bytes(4, "big")
    data[start + 4 : start + 8] = crc
    data[start + 8 : start + 8 + len(rec)] = rec
    seg.write_bytes(bytes(data))


@pytest.mark.parametrize("indexes", ["all", "none", "only-last"])
def test_same_bytes_same_reason_whatever_index_files_exist(tmp_path: Path, indexes: str) -> None:
    d = tmp_path / "one-segment"
    with BlockStore.open(d) as s:
        s.append_many(BLOCKS[:4])
    _flip_merkle_root_of_genesis_keeping_the_crc(d)
    idx = sorted((d / "segments").glob("*.idx"))
    if indexes == "none":
        for p in idx:
            p.unlink()
    assert failure(d) == ("bad-signature", 0)
    p = mc("verify", d)
    assert p.returncode == 1 and "at height 0: bad-signature:" in p.stdout, p


def test_same_bytes_same_reason_across_segments(ledger_copy: Path) -> None:
    _flip_merkle_root_of_genesis_keeping_the_crc(ledger_copy)
    with_idx = failure(ledger_copy)
    for p in (ledger_copy / "segments").glob("*.idx"):
        p.unlink()
    assert failure(ledger_copy) == with_idx == ("bad-signature", 0)


def test_version_1_segments_verify(tmp_path: Path) -> None:
    d = tmp_path / "v1"
    (d / "segments").mkdir(parents=True)
    (d / "FORMAT").write_bytes(segfile.FORMAT_TEXT)
    data = bytearray(b"MCSEG001" + bytes(8))
    for batch in (BLOCKS[:2], BLOCKS[2:5]):
        data += b"".join(segfile.frame(b.encode()) for b in batch)
        data += bytes(-len(data) % 4096)
    (d / "segments" / SEG0).write_bytes(bytes(data))
    assert verify_ledger_dir(d).blocks == 5
    with BlockStore.open(d, options=StoreOptions(segment_bytes=8 * 1024)) as s:
        s.append_many(BLOCKS[5:12])  # rolls over into version-2 segments
    assert verify_ledger_dir(d).blocks == 12


def test_not_a_ledger_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no FORMAT"):
        verify_ledger_dir(tmp_path)
    p = mc("verify", tmp_path)
    assert p.returncode == 2 and "not a ledger" in p.stderr


def test_a_segment_named_otherwise_is_refused(ledger_copy: Path) -> None:
    (ledger_copy / "segments" / "junk.seg").write_bytes(b"x")
    p = mc("verify", ledger_copy)
    assert p.returncode == 1 and "corrupt-store" in p.stdout and "junk.seg" in p.stdout


def test_an_empty_ledger_is_ok(tmp_path: Path) -> None:
    BlockStore.open(tmp_path / "e").close()
    assert verify_ledger_dir(tmp_path / "e").head is None
    assert ledger.HEADER_SIZE == 194  # the offsets above assume the version-1 block layout
