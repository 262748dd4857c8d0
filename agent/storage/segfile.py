"""Segment files of the block store: framing, headers, index files, scanning, durable writes.

The byte layout is described in ``docs/export-format.md`` ("Ledger directory"); the
store (``agent/storage/store.py``) decides when to write what. Everything here works on bytes,
file descriptors and paths handed in.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

import ledger
from ledger import Header
from ledger.errors import StoreCorruptError

FORMAT_FILE = "FORMAT"
FORMAT_TEXT = b"meterchain-ledger-v1\n"
SEGMENT_DIR = "segments"
SEG_MAGIC = b"MCSEG002"
"""Segment format 2 (written by this version): the header records the alignment."""
SEG_HEADER = struct.Struct(">8sQII")  # magic, first height, align, reserved (0)
SEG_HEADER_SIZE = SEG_HEADER.size  # 24
SEG_MAGIC_V1 = b"MCSEG001"
"""Segment format 1 (still read): no alignment in the header; the reader supplies it."""
SEG_HEADER_V1 = struct.Struct(">8sQ")
SEG_HEADER_V1_SIZE = SEG_HEADER_V1.size  # 16
MAX_ALIGN = 1 << 20
"""Largest alignment a segment may record (1 MiB); 1 means no padding."""
_FRAME = struct.Struct(">II")
FRAME_SIZE = _FRAME.size  # 8
_HEIGHT_AT = 4 + 1 + 1 + 32  # offset of the height inside a block record (header layout)
U64 = struct.Struct(">Q")
MAX_RECORD = ledger.HEADER_SIZE + ledger.SIGNATURE_SIZE + 4 + ledger.MAX_PAYLOAD_SIZE
MIN_RECORD = ledger.HEADER_SIZE + ledger.SIGNATURE_SIZE + 4
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def seg_name(first: int) -> str:
    return f"{first:020d}"


def frame(record: bytes) -> bytes:
    """Frame one record: ``u32 length | u32 CRC32(length bytes + record) | record``."""
    n = len(record).to_bytes(4, "big")
    return n + zlib.crc32(record, zlib.crc32(n)).to_bytes(4, "big") + record


def record_height(record: bytes) -> int:
    """The height field of an encoded block record (without decoding the rest)."""
    return int(U64.unpack_from(record, _HEIGHT_AT)[0])


@dataclass(frozen=True)
class SegLayout:
    """What a segment header says: its version, first height, where frames start and the
    alignment of its padding (recorded in version 2; the reader's default in version 1)."""

    version: int
    first: int
    data_start: int
    align: int


def parse_seg_header(data: bytes, v1_align: int) -> SegLayout:
    """Decode a segment header (either version); ``v1_align`` is used for version 1.

    Raises:
        ValueError: too short, unknown magic, a bad alignment or a reserved field set.
    """
    magic = data[:8]
    if magic == SEG_MAGIC_V1:
        if len(data) < SEG_HEADER_V1_SIZE:
            raise ValueError("segment shorter than its header")
        _, first = SEG_HEADER_V1.unpack_from(data, 0)
        return SegLayout(1, first, SEG_HEADER_V1_SIZE, v1_align)
    if magic != SEG_MAGIC:
        raise ValueError(f"unknown segment magic {bytes(magic)!r}")
    if len(data) < SEG_HEADER_SIZE:
        raise ValueError("segment shorter than its header")
    _, first, align, reserved = SEG_HEADER.unpack_from(data, 0)
    if not 1 <= align <= MAX_ALIGN or reserved != 0:
        raise ValueError(f"bad segment header (align {align}, reserved {reserved})")
    return SegLayout(2, first, SEG_HEADER_SIZE, align)


def seg_header(first: int, align: int) -> bytes:
    """The header of a new (version 2) segment."""
    return SEG_HEADER.pack(SEG_MAGIC, first, align, 0)


@dataclass
class Segment:
    first: int
    path: Path
    index: array | None  # offsets of records; None until loaded (sealed segments)
    size: int  # bytes of valid data (a multiple of align after a complete append)
    layout: SegLayout | None = None  # read from the header on first use

    @property
    def idx_path(self) -> Path:
        return self.path.with_suffix(".idx")


def write_all(fd: int, buf: bytes) -> None:
    view = memoryview(buf)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes, *, fsync: bool = True,
                   rename_to: Path | None = None) -> None:
    """Write ``data`` to ``path`` (fsync), optionally rename it, then fsync the directory."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    if rename_to is not None:
        os.replace(path, rename_to)
    if fsync:
        fsync_dir(path.parent)


def read_index(path: Path) -> array:
    idx = array("Q")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return idx
    idx.frombytes(raw[: len(raw) - len(raw) % 8])
    if struct.pack("=H", 1) != struct.pack(">H", 1):
        idx.byteswap()  # stored big-endian
    return idx


def write_index(path: Path, idx: array, *, durable: bool = False) -> None:
    out = array("Q", idx)
    if struct.pack("=H", 1) != struct.pack(">H", 1):
        out.byteswap()
    tmp = path.with_suffix(".idx.tmp")
    try:
        write_durably(tmp, out.tobytes(), fsync=durable, rename_to=path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def pread_frame(fd: int, offset: int) -> bytes:
    head = os.pread(fd, FRAME_SIZE, offset)
    if len(head) < FRAME_SIZE:
        return head
    length = int.from_bytes(head[:4], "big")
    if not MIN_RECORD <= length <= MAX_RECORD:
        return head
    return head + os.pread(fd, length, offset + FRAME_SIZE)


def frame_at(data: bytes, pos: int) -> int | None:
    """End of the whole, checksummed frame at ``pos``, or None."""
    if pos < 0 or pos + FRAME_SIZE > len(data):
        return None
    length, crc = _FRAME.unpack_from(data, pos)
    end = pos + FRAME_SIZE + length
    if not MIN_RECORD <= length <= MAX_RECORD or end > len(data):
        return None
    if zlib.crc32(data[pos + FRAME_SIZE : end], zlib.crc32(data[pos : pos + 4])) != crc:
        return None
    return end


def frame_ok(data: bytes, pos: int, height: int) -> bool:
    """Whether a whole, checksummed frame of the block at ``height`` starts at ``pos``."""
    return frame_at(data, pos) is not None and (
        record_height(data[pos + FRAME_SIZE :]) == height
    )


def next_frame(data: bytes, pos: int, align: int, base: int = 0) -> tuple[int, int] | None:
    """Find the whole frame at ``pos`` of ``data`` (file offset ``base``), skipping padding.

    Returns ``(start, end)``; ``(len(data), len(data))`` at a clean end; ``None`` when the
    bytes are not a whole, checksummed frame (a torn tail or damage).
    """
    n = len(data)
    while align > 1 and pos + 4 <= n and data[pos : pos + 4] == b"\0\0\0\0":
        off = base + pos
        boundary = min(pos + (-off % align or align), n)
        if data.count(0, pos, boundary) != boundary - pos:
            return None
        pos = boundary
    if pos == n:
        return (n, n)
    end = frame_at(data, pos)
    return None if end is None else (pos, end)


def later_frame_exists(data: bytes, pos: int) -> bool:
    """Whether a valid frame starts anywhere after ``pos`` (then it is not a torn tail)."""
    at = data.find(ledger.HEADER_MAGIC, pos + 1)
    while at != -1:
        if at - FRAME_SIZE > pos and frame_at(data, at - FRAME_SIZE) is not None:
            return True
        at = data.find(ledger.HEADER_MAGIC, at + 1)
    return False


def scan_sealed(seg: Segment, layout: SegLayout) -> array:
    """Rebuild a sealed segment's index by reading it whole; any bad record is corruption."""
    data = seg.path.read_bytes()
    idx = array("Q")
    pos = layout.data_start
    while True:
        got = next_frame(data, pos, layout.align)
        if got is None:
            raise StoreCorruptError(f"{seg.path}: record of height {seg.first + len(idx)} at "
                                    f"offset {pos} is damaged (sealed segment)")
        start, end = got
        if start >= len(data):
            return idx
        rec = data[start + FRAME_SIZE : end]
        if record_height(rec) != seg.first + len(idx):
            raise StoreCorruptError(f"{seg.path}: record at offset {start} has height "
                                    f"{record_height(rec)}, want {seg.first + len(idx)}")
        idx.append(start)
        pos = end


def decode_header(rec: bytes, path: Path, offset: int) -> Header:
    try:
        return Header.decode(rec[: ledger.HEADER_SIZE])
    except ledger.ChainError as exc:
        raise StoreCorruptError(f"{path}: record at offset {offset}: {exc}") from None
