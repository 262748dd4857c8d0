"""Read-only verification of a ledger directory, from the segment files alone.

``meterchain verify LEDGER_DIR`` walks every segment front to back (the layout of
``docs/export-format.md``, "Ledger directory") and hands each record, in order, to the
chain rules of ``docs/ledger-format.md`` section 9 at its chain position. Index files are
never read, and nothing the store would do on open (link checks, tail repair) runs first,
so the same segment bytes give the same reason and height whatever ``.idx`` files exist.
Bytes that are not a whole frame -- a torn tail left by a power cut, garbage after the last
block, a segment holding only its header -- are reported as ``malformed`` at the chain
position they stand at; nothing is skipped and nothing is changed on disk.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from agent.storage.segfile import (
    FORMAT_FILE,
    FORMAT_TEXT,
    FRAME_SIZE,
    MAX_RECORD,
    MIN_RECORD,
    SEG_HEADER_SIZE,
    SEGMENT_DIR,
    parse_seg_header,
)
from ledger.errors import HeightError, MalformedError, StoreCorruptError, StoreError
from ledger.export import VerifyResult
from ledger.verify import ChainVerifier

V1_ALIGN = 4096
"""Alignment assumed for version-1 segments, which do not record it (the store's default)."""


def _segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files in height order.

    Raises:
        StoreError: not a ledger directory (no or another ``FORMAT``, no ``segments/``).
        StoreCorruptError: a ``.seg`` file whose name is not a height.
    """
    marker = directory / FORMAT_FILE
    if not directory.is_dir():
        raise StoreError(f"{directory}: not a ledger directory")
    try:
        text = marker.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{directory}: not a ledger (no {FORMAT_FILE} file)") from None
    except OSError as exc:
        raise StoreError(f"{marker}: cannot read: {exc.strerror}") from None
    if text != FORMAT_TEXT:
        raise StoreError(f"{directory}: not a ledger this version understands ({text[:40]!r})")
    segdir = directory / SEGMENT_DIR
    if not segdir.is_dir():
        raise StoreError(f"{directory}: not a ledger (no {SEGMENT_DIR}/ directory)")
    out = []
    for p in segdir.iterdir():
        if p.suffix != ".seg":
            continue  # indexes, and *.seg.tmp: a segment never committed
        if len(p.stem) != 20 or not p.stem.isdigit():
            raise StoreCorruptError(f"{p}: unexpected file in {SEGMENT_DIR}/ (a segment's "
                                    "name is its first height in 20 digits)")
        out.append((int(p.stem), p))
    return sorted(out)


class _Frames:
    """Walks one segment's frames; raises ``MalformedError`` at ``position`` on bad bytes."""

    def __init__(self, f: BinaryIO, path: Path, align: int, start: int, size: int) -> None:
        self.f, self.path, self.align, self.pos, self.size = f, path, align, start, size

    def bad(self, what: str, position: int, last: bool) -> MalformedError:
        rest = self.size - self.pos
        hint = (" (a torn tail, as a power cut during an append leaves, which the agent drops "
                "when it next opens the ledger; or damage)") if last else ""
        return MalformedError(f"{self.path.name}: {rest} byte(s) at offset {self.pos} are "
                              f"not a whole record: {what}{hint}", height=position)

    def next(self, position: int, last: bool) -> bytes | None:
        """The next record, or None at the end of the segment."""
        while True:
            if self.pos == self.size:
                return None
            head = self._read(self.pos, FRAME_SIZE)
            if head[:4] != b"\0\0\0\0" or self.align == 1:
                break
            boundary = min(self.pos + (-self.pos % self.align or self.align), self.size)
            pad = self._read(self.pos, boundary - self.pos)
            if pad.count(0) != len(pad):
                raise self.bad("padding holds non-zero bytes", position, last)
            self.pos = boundary
        if len(head) < FRAME_SIZE:
            raise self.bad("the frame header is cut off", position, last)
        length = int.from_bytes(head[:4], "big")
        if not MIN_RECORD <= length <= MAX_RECORD:
            raise self.bad(f"record length {length} out of range", position, last)
        record = self._read(self.pos + FRAME_SIZE, length)
        if len(record) != length:
            raise self.bad(f"the record is cut off ({len(record)} of {length} bytes)", position,
                           last)
        if zlib.crc32(record, zlib.crc32(head[:4])) != int.from_bytes(head[4:], "big"):
            raise self.bad("CRC-32 mismatch", position, last)
        self.pos += FRAME_SIZE + length
        return record

    def _read(self, offset: int, n: int) -> bytes:
        self.f.seek(offset)
        return self.f.read(n)


def verify_ledger_dir(directory: Path, *, gateway_key: bytes | None = None,
                      progress: Callable[[int], None] | None = None) -> VerifyResult:
    """Verify every record of a ledger directory in order, as the format documents say.

    The first segment's first height ``F`` is where the chain starts: genesis when 0, a
    trusted height otherwise (older segments pruned).

    Raises:
        StoreError: not a ledger directory, or a file cannot be read.
        StoreCorruptError: a ``.seg`` file whose name is not a height.
        ChainError: the first failing check, at its chain position: section 9's reasons
            for records; ``malformed`` for segment headers and frames; ``height-mismatch``
            when a segment does not start at the next height (blocks missing between).
    """
    segments = _segments(directory)
    first = segments[0][0] if segments else 0
    verifier = ChainVerifier(gateway_key=gateway_key, start_height=first)
    blocks = readings = 0
    for n, (name_first, path) in enumerate(segments):
        last = n == len(segments) - 1
        position = verifier.next_height
        try:
            f = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise StoreError(f"{path}: cannot open: {exc.strerror}") from None
        with f:
            size = path.stat().st_size
            try:
                layout = parse_seg_header(f.read(SEG_HEADER_SIZE), V1_ALIGN)
            except ValueError as exc:
                raise MalformedError(f"{path.name}: {exc}", height=position) from None
            if layout.first != name_first:
                raise MalformedError(f"{path.name}: header says first height {layout.first}",
                                     height=position)
            if layout.first != position:
                raise HeightError(f"{path.name} does not start at the next height",
                                  expected=position, actual=layout.first, height=position)
            frames = _Frames(f, path, layout.align, layout.data_start, size)
            held = 0
            while (record := frames.next(verifier.next_height, last)) is not None:
                head = verifier.add_record(record)
                held += 1
                blocks += 1
                readings += head.header.reading_count
                if progress is not None:
                    progress(head.height)
            if held == 0:
                raise MalformedError(f"{path.name} holds no block (only its header)",
                                     height=position)
    return VerifyResult(first, verifier.head, blocks, readings)
