"""Append-only, crash-safe block store: framed records in segment files, one fsync per append.

On-disk layout (normative description: ``docs/export-format.md``, "Ledger directory";
framing, index files and scanning live in ``agent/storage/segfile.py``)::

    LEDGER/
      FORMAT                          "meterchain-ledger-v1\\n"; the writer holds a flock on it
      segments/
        00000000000000000000.seg      segment: 24-byte header, then framed block records
        00000000000000000000.idx      its index: one u64 file offset per block, in height order
        00000000000000012345.seg      the next segment; the name is the height of its first block

Segment header: ``b"MCSEG002"``, the first height (u64, big-endian), the alignment (u32) and
a reserved u32 (0); version-1 segments (``b"MCSEG001"`` and the first height, 16 bytes, the
alignment not recorded: ``StoreOptions.align`` is assumed) are still read. A frame is
``u32 length | u32 CRC32 | record`` where the CRC32 (zlib, IEEE polynomial) covers the four
length bytes and the record, and the record is ``ledger.Block.encode()``. A length of 0
starts padding: zero bytes up to the next multiple of the segment's alignment in the file. Each
append writes its frames plus padding to the next boundary in one ``write`` and one
``fdatasync``, so a committed page is never rewritten. A new segment is written to a temporary
file with its first batch, fsynced and renamed into place (then the directory is fsynced).

Opening reads the ``FORMAT`` file, lists the segment names, trusts the sealed segments (their
index is loaded and cheaply checked only when first needed) and scans only the last segment
from its last indexed record: a torn tail is cut off (logged); a bad record followed by good
ones is corruption, which is refused (``StoreCorruptError``), never silently truncated.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import threading
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import ledger
from agent.storage.segfile import (  # noqa: F401 - FORMAT_TEXT, SEG_MAGIC: re-exported
    FORMAT_FILE,
    FORMAT_TEXT,
    FRAME_SIZE,
    MAX_ALIGN,
    MAX_RECORD,
    MIN_RECORD,
    NO_SPACE,
    SEG_HEADER_SIZE,
    SEG_MAGIC,
    SEGMENT_DIR,
    U64,
    SegLayout,
    Segment,
    decode_header,
    frame,
    frame_ok,
    fsync_dir,
    later_frame_exists,
    next_frame,
    parse_seg_header,
    pread_frame,
    read_index,
    record_height,
    scan_sealed,
    seg_header,
    seg_name,
    write_all,
    write_durably,
    write_index,
)
from ledger import Block, ChainHead
from ledger.errors import HeightError, StoreCorruptError, StoreError, StoreFullError

log = logging.getLogger(__name__)


def _resolve(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    """Settle a submit's future (its event loop may have ended: then nobody waits)."""
    if fut.done():
        return
    with contextlib.suppress(RuntimeError):  # "Event loop is closed" scheduling callbacks
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)


@dataclass
class _Unsynced:
    """Blocks written to the last segment by :meth:`BlockStore.submit`, not yet durable."""

    buf_len: int
    offsets: list[int]
    end: int  # file offset just past this write
    head: ChainHead
    future: asyncio.Future[None]


@dataclass(frozen=True)
class StoreOptions:
    """Limits and durability settings of a :class:`BlockStore`."""

    segment_bytes: int = 64 * 1024 * 1024
    """Start a new segment when an append would make the current one larger than this."""
    fsync: bool = True
    """fdatasync every append (turn off only for throw-away benchmarks and tests)."""
    align: int = 4096
    """Pad each append to a multiple of this many bytes (1 = no padding, at most 1 MiB).
    Recorded in the header of every new segment; a segment keeps the alignment it was
    begun with."""
    max_bytes: int | None = None
    """Budget for the store's disk use; an append beyond it raises ``StoreFullError``."""
    read_only: bool = False
    """Open without the writer lock and without repairing the tail (for verify/show)."""
    create: bool = True
    """Create the ledger layout when the directory is missing or empty."""
    max_open_segments: int = 8
    """Read handles kept open for random access to old segments."""
    group_commit_delay_s: float = 0.002
    """:meth:`BlockStore.submit` only: how long the sync thread waits, once there is
    something to sync, for more blocks to join that fdatasync (as PostgreSQL's
    ``commit_delay``). Fewer syncs per block cost the sealing thread fewer hand-overs and
    an SD card fewer cache flushes; each block waits at most this much longer."""



class BlockStore:
    """The gateway's block log. Use :meth:`open`; not safe for use from several threads."""

    def __init__(self, directory: Path, options: StoreOptions) -> None:
        self.directory = directory
        self.options = options
        self.head: ChainHead | None = None
        """The last durable block: what readers see."""
        self._tip: ChainHead | None = None  # the last block written, durable or not
        self._unsynced: collections.deque[_Unsynced] = collections.deque()
        # shared with the sync thread, under _cv: the file end written so far and the end
        # the last successful fdatasync covered, both in epoch _epoch (a new epoch starts
        # whenever the write position is reset: a failed sync cut back, a new segment)
        self._cv = threading.Condition()
        self._epoch = 0
        self._want = 0
        self._synced = 0
        self._sync_error: OSError | None = None  # a sync of the current epoch failed
        self._sync_thread: threading.Thread | None = None
        self._sync_idle = False  # the sync thread waits for something to sync
        self._cut_off: StoreError | None = None  # why blocks in flight were last cut off
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self.syncs = 0
        """fdatasync calls made for appends (group commit makes it less than blocks)."""
        self._segments: list[Segment] = []
        self._lock_fd: int | None = None
        self._fd: int | None = None  # append fd of the last segment
        self._idx_fd: int | None = None
        self._idx_behind = False  # the active index file lacks entries (disk was full)
        self._readers: dict[Path, int] = {}
        self._closed = False
        self._keep_free: tuple[int, str] | None = None  # see keep_free()

    # --- opening ---------------------------------------------------------------------

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], *, options: StoreOptions | None = None
    ) -> BlockStore:
        """Open (or create) the ledger in ``directory`` and recover its tail.

        Raises:
            StoreError: not a ledger, in use by another writer, or unreadable.
            StoreCorruptError: damage that is not a torn tail (names segment and offset).
        """
        store = cls(Path(directory), options or StoreOptions())
        try:
            store._open()
        except BaseException:
            store.close()
            raise
        return store

    def _open(self) -> None:
        d, opts = self.directory, self.options
        if not 1 <= opts.align <= MAX_ALIGN:
            raise StoreError(f"alignment {opts.align} out of range 1..{MAX_ALIGN}")
        marker = d / FORMAT_FILE
        if not d.exists():
            if not opts.create or opts.read_only:
                raise StoreError(f"{d}: no such ledger directory")
            d.mkdir(parents=True)
        if not d.is_dir():
            raise StoreError(f"{d}: not a ledger (not a directory)")
        if not marker.exists():
            if any(d.iterdir()) or not opts.create or opts.read_only:
                raise StoreError(f"{d}: not a ledger (no {FORMAT_FILE} file)")
            (d / SEGMENT_DIR).mkdir()
            write_durably(marker, FORMAT_TEXT)
        try:
            text = marker.read_bytes()
        except OSError as exc:
            raise StoreError(f"{marker}: cannot read: {exc.strerror}") from None
        if text != FORMAT_TEXT:
            raise StoreError(f"{d}: not a ledger this version understands ({text[:40]!r})")
        if not opts.read_only:
            self._lock_fd = os.open(marker, os.O_RDONLY)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"{d}: ledger is in use by another process") from None
        segdir = d / SEGMENT_DIR
        if not segdir.is_dir():
            raise StoreError(f"{d}: not a ledger (no {SEGMENT_DIR}/ directory)")
        names = sorted(p for p in segdir.iterdir() if p.suffix == ".seg")
        for p in segdir.glob("*.tmp"):
            if not opts.read_only:
                log.warning("removing unfinished segment %s", p)
                p.unlink()
        for p in names:
            try:
                first = int(p.stem)
            except ValueError:
                raise StoreCorruptError(f"{p}: unexpected file in segments/") from None
            self._segments.append(Segment(first, p, None, p.stat().st_size))
        if not opts.read_only:
            for p in segdir.glob("*.idx"):
                if not p.with_suffix(".seg").exists():
                    log.warning("removing index without segment %s", p)
                    p.unlink()
        if self._segments:
            self._recover_last()

    def _recover_last(self) -> None:
        """Scan the last segment from its last indexed record; cut a torn tail."""
        seg = self._segments[-1]
        with open(seg.path, "rb") as f:
            layout = self._check_seg_header(seg, f.read(SEG_HEADER_SIZE))
            index = read_index(seg.idx_path)
            on_disk = array("Q", index)
            # drop entries a crash left pointing past, or into, unwritten data
            while index and not frame_ok(
                pread_frame(f.fileno(), index[-1]), 0, seg.first + len(index) - 1
            ):
                index.pop()
            base = index.pop() if index else layout.data_start
            f.seek(base)
            data = f.read()  # the tail: the last indexed record and what follows it
        pos = 0
        prev: ChainHead | None = None
        while True:
            got = next_frame(data, pos, layout.align, base)
            if got is None or got[0] == len(data):
                if got is not None:
                    pos = got[0]
                break
            start, end = got
            rec = data[start + FRAME_SIZE : end]
            height = seg.first + len(index)
            if record_height(rec) != height:
                raise StoreCorruptError(f"{seg.path}: record at offset {base + start} has "
                                        f"height {record_height(rec)}, want {height}")
            header = decode_header(rec, seg.path, base + start)
            if prev is not None:
                ledger.check_link(prev.header, prev.hash, header)
            prev = ChainHead(header, ledger.header_hash(rec[: ledger.HEADER_SIZE]))
            index.append(base + start)
            pos = end
        if pos < len(data):
            if later_frame_exists(data, pos):
                raise StoreCorruptError(
                    f"{seg.path}: bad record at offset {base + pos} is followed by valid "
                    "records; refusing to truncate (restore from a replica or an export)"
                )
            verb = "ignoring" if self.options.read_only else "dropping"
            log.warning("%s: %s torn tail of %d byte(s) at offset %d after height %d",
                        seg.path, verb, len(data) - pos, base + pos, seg.first + len(index) - 1)
            if not self.options.read_only:
                with open(seg.path, "r+b") as f:
                    f.truncate(base + pos)
                    if self.options.fsync:
                        os.fsync(f.fileno())
        seg.size = base + pos
        seg.index = index
        if prev is None:
            if len(self._segments) > 1:
                # cannot happen with atomic segment creation; repair by forgetting it
                log.warning("removing empty last segment %s", seg.path)
                if not self.options.read_only:
                    seg.path.unlink()
                    seg.idx_path.unlink(missing_ok=True)
                self._segments.pop()
                self._recover_last()
                return
            if seg.first != 0:
                raise StoreCorruptError(f"{seg.path}: the only segment holds no block")
        self.head = self._tip = prev
        if not self.options.read_only:
            self._fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND)
            self._idx_fd = os.open(seg.idx_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            common = 0
            while common < min(len(on_disk), len(index)) and on_disk[common] == index[common]:
                common += 1
            os.ftruncate(self._idx_fd, 8 * common)  # shrinking needs no space
            self._idx_write(index[common:], 8 * common)

    def _check_seg_header(self, seg: Segment, data: bytes) -> SegLayout:
        """Decode a segment's header (version 1 or 2) and remember its layout.

        Raises:
            StoreCorruptError: the header is damaged or names another first height.
        """
        try:
            layout = parse_seg_header(data, self.options.align)
        except ValueError as exc:
            raise StoreCorruptError(f"{seg.path}: {exc}") from None
        if layout.first != seg.first:
            raise StoreCorruptError(f"{seg.path}: bad segment header (first height "
                                    f"{layout.first}, name says {seg.first})")
        seg.layout = layout
        return layout

    def _layout(self, seg: Segment) -> SegLayout:
        """A segment's layout, reading its header on first use (sealed segments)."""
        if seg.layout is None:
            return self._check_seg_header(seg, os.pread(self._reader(seg), SEG_HEADER_SIZE, 0))
        return seg.layout

    # --- state -----------------------------------------------------------------------

    @property
    def height(self) -> int:
        """Height of the last committed block, -1 when the store is empty."""
        return -1 if self.head is None else self.head.height

    @property
    def first_height(self) -> int:
        """Lowest height still stored (0 unless old segments were pruned)."""
        return self._segments[0].first if self._segments else 0

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def disk_usage(self) -> int:
        """Bytes the store's files take (segments, indexes, FORMAT)."""
        total = 0
        for seg in self._segments:
            total += seg.size
            idx = seg.idx_path
            total += idx.stat().st_size if idx.exists() else 0
        return total + len(FORMAT_TEXT)

    def keep_free(self, nbytes: int | None, reason: str = "") -> None:
        """Refuse appends that would leave fewer than ``nbytes`` free on the store's
        filesystem (``StoreFullError`` naming ``reason``, nothing written); ``None`` lifts
        it. The agent's disk reserve (``agent/storage/reserve.py``) sets it while the
        reserve is released, so blocks do not eat the space kept for small state."""
        self._keep_free = None if nbytes is None else (nbytes, reason)

    def free_bytes(self) -> int:
        """Bytes an unprivileged writer may still use on the store's filesystem.

        Raises:
            OSError: the filesystem cannot be queried.
        """
        st = os.statvfs(self.directory)
        return st.f_bavail * st.f_frsize

    # --- appending -------------------------------------------------------------------

    def append(self, block: Block) -> None:
        """Append one block durably (one fsync). See :meth:`append_many`."""
        self.append_many((block,))

    def append_many(self, blocks: Sequence[Block]) -> None:
        """Append blocks that follow the tip, with one write and one fsync for all.

        Returns when the blocks are durable; blocks submitted before (:meth:`submit`) are
        settled first (:meth:`drain`). Nothing is changed when it raises.

        Raises:
            ChainError: a block does not link onto the one before it (or is no genesis).
            StoreFullError: no space left on the disk or within ``max_bytes``.
            StoreError: the store is read-only or closed, or the disk failed.
        """
        if not blocks:
            return
        self.drain()
        head, frames = self._prepare(blocks)
        seg = self._segments[-1] if self._segments else None
        if self._needs_new_segment(seg, frames):
            self._append_new_segment(blocks[0].height, frames)
        else:
            assert seg is not None and self._fd is not None
            start = seg.size
            buf_len, offsets = self._write(seg, frames, start)
            if self.options.fsync:
                self.syncs += 1
                try:
                    os.fdatasync(self._fd)
                except OSError as exc:
                    self._undo(seg, exc, start)
            self._publish(seg, buf_len, offsets)
            with self._cv:
                self._want = self._synced = seg.size
        self.head = self._tip = head

    def submit(self, blocks: Sequence[Block]) -> asyncio.Future[None]:
        """Write blocks that follow the tip now; the returned future is done once they
        are durable. Call it from the event loop's thread.

        This is group commit without waiting: a sync thread of the store fdatasyncs the
        segment again and again while writes arrive, so blocks written during one sync
        share the next, and the event loop never waits for the disk. Several submits may
        be in flight; :attr:`tip` is the last block written. Blocks become visible to
        readers (``head``, ``height``, ``get``, ``iter_records``) in order and only once
        an fdatasync covering them has returned. If a sync fails, every block not yet
        durable is cut off the file and each of their futures fails (StoreFullError when
        the disk is full, StoreError otherwise); the tip is the head again. Starting a new
        segment (once per ``segment_bytes``) settles what is in flight and is synchronous.

        Raises (nothing written; the blocks in flight are unaffected, except as below):
            ChainError: a block does not link onto the tip (or is no genesis).
            StoreFullError: no space left on the disk or within ``max_bytes``; or, when
                these blocks start a new segment, the blocks in flight before them were
                cut off (they fail with the same error).
            StoreError: the store is read-only or closed, or the disk failed.
        """
        loop = asyncio.get_running_loop()
        if self._unsynced and self._loop is not loop:
            self.drain()  # left in flight by an event loop that has ended
        fut: asyncio.Future[None] = loop.create_future()
        if not blocks:
            fut.set_result(None)
            return fut
        head, frames = self._prepare(blocks)
        seg = self._segments[-1] if self._segments else None
        if self._needs_new_segment(seg, frames):
            tip = self._tip
            self.drain()
            if self._tip is not tip:  # a failed sync cut off what these blocks follow
                assert self._cut_off is not None
                raise type(self._cut_off)(f"{self.directory}: not written, the blocks "
                                          f"before them were cut off: {self._cut_off}")
            self._append_new_segment(blocks[0].height, frames)
            self.head = self._tip = head
            fut.set_result(None)
            return fut
        assert seg is not None
        start = self._write_end(seg)
        buf_len, offsets = self._write(seg, frames, start)
        end = start + buf_len
        self._unsynced.append(_Unsynced(buf_len, offsets, end, head, fut))
        self._tip = head
        self._loop = loop
        if self._sync_thread is None:
            self._sync_thread = threading.Thread(target=self._sync_loop, daemon=True,
                                                 name=f"store-sync-{self.directory.name}")
            self._sync_thread.start()
        with self._cv:
            self._want = end
            if self._sync_idle:
                self._cv.notify_all()
        return fut

    async def append_async(self, block: Block) -> None:
        """Append one block, waiting for its fsync off the event loop. See
        :meth:`append_many_async`."""
        await self.append_many_async((block,))

    async def append_many_async(self, blocks: Sequence[Block]) -> None:
        """:meth:`submit` the blocks and wait until they are durable.

        The event loop (meter polls, forwarders, the sealer) keeps running while an SD
        card stalls. Cancelled while the sync runs (shutdown), it waits for what is in
        flight to become durable, or to be cut off when the sync fails, before the
        cancellation goes through, so the store never holds an unsettled record.

        Raises:
            As :meth:`submit`, and what the sync raises into the future.
        """
        fut = self.submit(blocks)
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            self.drain()
            if fut.done() and not fut.cancelled():
                fut.exception()  # settled; the caller reads the outcome from the store
            raise

    def drain(self) -> None:
        """Block until every submitted block is durable or cut off, and settle them
        (publish the durable ones, fail the futures of the others). Quick when nothing is
        in flight."""
        if not self._unsynced:
            return
        end = self._unsynced[-1].end
        with self._cv:
            while (self._synced < end and self._sync_error is None
                   and self._sync_thread is not None and self._sync_thread.is_alive()):
                self._cv.wait()
            synced, error = self._synced, self._sync_error
        self._settle(synced, error)
        if self._unsynced:  # the sync thread is gone (cannot happen before close)
            self._fail_unsynced(OSError(5, "the store's sync thread stopped"))

    @property
    def tip(self) -> ChainHead | None:
        """The last block written (durable or still in flight); the next block links
        onto it. Equal to :attr:`head` when nothing is in flight."""
        return self._tip

    @property
    def in_flight(self) -> int:
        """Blocks submitted but not yet durable."""
        return sum(len(u.offsets) for u in self._unsynced)  # one offset per block

    def _sync_loop(self) -> None:
        """The sync thread: fdatasync while anything written is not yet covered, and tell
        the event loop how far each sync reached."""
        while True:
            with self._cv:
                self._sync_idle = True
                while not self._stopping and (self._synced >= self._want
                                              or self._sync_error is not None):
                    self._cv.wait()
                self._sync_idle = False
                if self._stopping:
                    return
                delay = self.options.group_commit_delay_s
                if delay > 0:  # nobody wakes it meanwhile: submit notifies an idle thread
                    self._cv.wait(delay)
                epoch, target, fd, loop = self._epoch, self._want, self._fd, self._loop
            error: OSError | None = None
            if self.options.fsync:
                assert fd is not None
                self.syncs += 1  # only this thread counts while it runs
                try:
                    os.fdatasync(fd)
                except OSError as exc:
                    error = exc
            with self._cv:
                if epoch == self._epoch:
                    if error is None:
                        self._synced = max(self._synced, target)
                    else:
                        self._sync_error = error
                self._cv.notify_all()
            if loop is not None:
                # a closed loop: whoever drains the store settles instead
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._on_synced, epoch)

    def _on_synced(self, epoch: int) -> None:
        """In the event loop: a sync of ``epoch`` ended; settle what it decided."""
        with self._cv:
            if epoch != self._epoch:
                return  # the write position was reset since: nothing of it is left
            synced, error = self._synced, self._sync_error
        self._settle(synced, error)

    def _settle(self, synced: int, error: OSError | None) -> None:
        """Publish the writes ``synced`` covers, in order; on ``error``, cut off the rest."""
        seg = self._segments[-1] if self._segments else None
        while self._unsynced and self._unsynced[0].end <= synced:
            u = self._unsynced.popleft()
            assert seg is not None
            self._publish(seg, u.buf_len, u.offsets)
            self.head = u.head
            _resolve(u.future, None)
        if error is not None:
            self._fail_unsynced(error)

    def _fail_unsynced(self, exc: OSError) -> None:
        """A sync failed: cut every write it may not cover off the file, start a new
        epoch and fail the futures of the blocks cut off."""
        seg = self._segments[-1]
        failed = list(self._unsynced)
        self._unsynced.clear()
        self._tip = self.head
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, seg.size)
            os.fsync(self._fd)
        except OSError as exc2:
            self._closed = True
            err: StoreError = StoreError(
                f"{seg.path}: fdatasync failed ({exc.strerror}) and the unsynced tail "
                f"could not be cut off ({exc2.strerror}); reopen the store")
        else:
            if exc.errno in NO_SPACE:
                err = StoreFullError(f"{seg.path}: no space left on device")
            else:
                err = StoreError(f"{seg.path}: fdatasync failed: {exc.strerror}")
        with self._cv:
            self._epoch += 1
            self._want = self._synced = seg.size
            self._sync_error = None
            self._cv.notify_all()
        self._cut_off = err
        for u in failed:
            _resolve(u.future, type(err)(str(err)))

    def _prepare(self, blocks: Sequence[Block]) -> tuple[ChainHead, list[bytes]]:
        """Check the blocks link onto the tip; return the new tip and framed records."""
        if self.options.read_only or self._closed:
            state = "closed" if self._closed else "read-only"
            raise StoreError(f"{self.directory}: store is {state}")
        head = self._tip
        records: list[bytes] = []
        for block in blocks:
            header = block.header
            enc = header.encode()
            if head is None:
                if header.height != 0:
                    raise HeightError("first block of an empty store must be genesis",
                                      expected=0, actual=header.height, height=header.height)
                if header.prev_hash != ledger.ZERO_HASH:
                    raise ledger.MalformedError("genesis block must have an all-zero previous hash",
                                                height=0)
            else:
                ledger.check_link(head.header, head.hash, header)
            head = ChainHead(header, ledger.header_hash(enc))
            records.append(block.encode())
        assert head is not None  # blocks is not empty
        return head, [frame(r) for r in records]

    def _needs_new_segment(self, seg: Segment | None, frames: list[bytes]) -> bool:
        if seg is None:
            return True
        batch_len = sum(len(f) for f in frames)
        return (bool(seg.index or self._unsynced)
                and self._write_end(seg) + batch_len > self.options.segment_bytes)

    def _write_end(self, seg: Segment) -> int:
        """Where the next write to the last segment goes: past what is in flight."""
        return self._unsynced[-1].end if self._unsynced else seg.size

    def _pad(self, end: int, align: int) -> bytes:
        return bytes((-end) % align)

    def _check_budget(self, extra: int) -> None:
        if self._keep_free is not None:
            keep, reason = self._keep_free
            try:
                free = self.free_bytes()
            except OSError as exc:
                raise StoreError(f"{self.directory}: cannot measure free space: "
                                 f"{exc.strerror}") from None
            if free - extra < keep:
                raise StoreFullError(f"{self.directory}: {reason} ({free} bytes free, "
                                     f"{keep} kept free)")
        budget = self.options.max_bytes
        in_flight = sum(u.buf_len + 8 * len(u.offsets) for u in self._unsynced)
        if budget is not None and self.disk_usage() + in_flight + extra > budget:
            raise StoreFullError(
                f"{self.directory}: store budget of {self.options.max_bytes} bytes reached"
            )

    def _write(self, seg: Segment, frames: list[bytes], start: int) -> tuple[int, list[int]]:
        """Write framed records (padded) at ``start``, the end of the last segment's last
        write; not yet synced. Returns the bytes written and each record's offset.
        Cut back to ``start`` when it raises."""
        assert self._fd is not None and self._idx_fd is not None and seg.index is not None
        align = self._layout(seg).align  # a segment keeps the alignment it was begun with
        lead = self._pad(start, align)  # only after recovery left an unpadded end
        offsets = []
        pos = start + len(lead)
        for f in frames:
            offsets.append(pos)
            pos += len(f)
        buf = b"".join((lead, *frames, self._pad(pos, align)))
        self._check_budget(len(buf) + 8 * len(frames))
        try:
            write_all(self._fd, buf)
        except OSError as exc:
            self._undo(seg, exc, start)
        return len(buf), offsets

    def _publish(self, seg: Segment, buf_len: int, offsets: list[int]) -> None:
        """Make durable records visible: index entries and the segment's size."""
        assert seg.index is not None
        self._idx_write(offsets, 8 * len(seg.index))
        seg.index.extend(offsets)
        seg.size += buf_len

    def _undo(self, seg: Segment, exc: OSError, start: int) -> None:
        """Cut a failed write (or sync) back to ``start``, then raise."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, start)
            os.fsync(self._fd)
        except OSError as exc2:
            self._closed = True
            raise StoreError(f"{seg.path}: write failed ({exc.strerror}) and could not be "
                             f"undone ({exc2.strerror}); reopen the store") from None
        if exc.errno in NO_SPACE:
            raise StoreFullError(f"{seg.path}: no space left on device") from None
        raise StoreError(f"{seg.path}: write failed: {exc.strerror}") from None

    def _append_new_segment(self, first: int, frames: list[bytes]) -> None:
        segdir = self.directory / SEGMENT_DIR
        path = segdir / f"{seg_name(first)}.seg"
        tmp = path.with_suffix(".seg.tmp")
        offsets = []
        pos = SEG_HEADER_SIZE
        for f in frames:
            offsets.append(pos)
            pos += len(f)
        buf = b"".join((seg_header(first, self.options.align), *frames,
                        self._pad(pos, self.options.align)))
        self._check_budget(len(buf) + 8 * len(frames))
        if self._segments:  # seal the current segment: its index becomes durable
            assert self._idx_fd is not None
            os.fsync(self._idx_fd)
        try:
            write_durably(tmp, buf, fsync=self.options.fsync, rename_to=path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno in NO_SPACE:
                raise StoreFullError(f"{path}: no space left on device") from None
            raise StoreError(f"{path}: cannot create segment: {exc.strerror}") from None
        for fd in (self._fd, self._idx_fd):
            if fd is not None:
                os.close(fd)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._idx_fd = os.open(path.with_suffix(".idx"),
                               os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        self._idx_behind = False
        self._idx_write(offsets, 0)
        self._segments.append(Segment(first, path, array("Q", offsets), len(buf), SegLayout(
            2, first, SEG_HEADER_SIZE, self.options.align)))
        with self._cv:  # offsets start again in the new file
            self._epoch += 1
            self._want = self._synced = len(buf)

    def _idx_write(self, offsets: Sequence[int], size: int) -> None:
        """Append index entries (not fsynced: the index is rebuilt from data if lost).

        When the disk is full the entries are left out (the file is cut back to ``size``)
        and later appends skip the index; opening rescans from its last entry.
        """
        if self._idx_behind or not offsets:
            return
        assert self._idx_fd is not None
        try:
            write_all(self._idx_fd, b"".join(U64.pack(o) for o in offsets))
        except OSError as exc:
            log.warning("%s: cannot extend the block index (%s); it will be rebuilt on "
                        "open", self.directory, exc.strerror)
            os.ftruncate(self._idx_fd, size)
            self._idx_behind = True

    # --- reading ---------------------------------------------------------------------

    def _find(self, height: int) -> tuple[Segment, int]:
        if not self.first_height <= height <= self.height:
            what = "pruned" if 0 <= height < self.first_height else "not in the store"
            raise StoreError(f"height {height} is {what} (store holds "
                             f"{self.first_height}..{self.height})")
        lo, hi = 0, len(self._segments) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._segments[mid].first <= height:
                lo = mid
            else:
                hi = mid - 1
        seg = self._segments[lo]
        return seg, height - seg.first

    def _load_index(self, seg: Segment, *, rebuild: bool = False) -> array:
        """The segment's index, loaded (and cheaply checked) on first use."""
        if seg.index is None or rebuild:
            idx = array("Q") if rebuild else read_index(seg.idx_path)
            fd = self._reader(seg)
            layout = self._layout(seg)
            ok = bool(idx) and idx[0] == layout.data_start and frame_ok(
                pread_frame(fd, idx[-1]), 0, seg.first + len(idx) - 1
            )
            nxt = self._segments.index(seg) + 1
            if ok and nxt < len(self._segments):
                ok = self._segments[nxt].first == seg.first + len(idx)
            if not ok:
                log.warning("%s: index missing or damaged; rebuilding it", seg.idx_path)
                idx = scan_sealed(seg, layout)
                if not self.options.read_only and seg is not self._segments[-1]:
                    try:
                        write_index(seg.idx_path, idx, durable=True)
                    except OSError as exc:
                        log.warning("%s: cannot save the rebuilt index: %s", seg.idx_path,
                                    exc.strerror)
            seg.index = idx
        return seg.index

    def _reader(self, seg: Segment) -> int:
        fd = self._readers.get(seg.path)
        if fd is None:
            if len(self._readers) >= self.options.max_open_segments:
                old_path, old_fd = next(iter(self._readers.items()))
                os.close(old_fd)
                del self._readers[old_path]
            try:
                fd = os.open(seg.path, os.O_RDONLY)
            except OSError as exc:
                raise StoreError(f"{seg.path}: cannot open: {exc.strerror}") from None
            self._readers[seg.path] = fd
        return fd

    def _read_at(self, seg: Segment, i: int) -> bytes:
        for attempt in (0, 1):
            index = self._load_index(seg, rebuild=attempt == 1)
            offset = index[i]
            buf = pread_frame(self._reader(seg), offset)
            if frame_ok(buf, 0, seg.first + i):
                return buf[FRAME_SIZE:]
            if attempt == 0 and seg is self._segments[-1]:
                break  # the last segment's index was rebuilt on open: the data is bad
        raise StoreCorruptError(f"{seg.path}: record of height {seg.first + i} at offset "
                                f"{offset} is damaged (checksum or height)")

    def get_record(self, height: int) -> bytes:
        """The encoded block record at ``height`` (checksum checked).

        Raises:
            StoreError: the height is not stored (never written or pruned).
            StoreCorruptError: the record fails its checksum.
        """
        seg, i = self._find(height)
        return self._read_at(seg, i)

    def get(self, height: int) -> Block:
        """The block at ``height``. Raises as :meth:`get_record`, or ``ChainError``."""
        return Block.decode(self.get_record(height))

    def iter_records(self, start: int, stop: int | None = None) -> Iterator[bytes]:
        """Records of heights ``start`` up to (excluding) ``stop`` (default: to the head).

        Reads each segment sequentially. Raises as :meth:`get_record`.
        """
        stop = self.height + 1 if stop is None else min(stop, self.height + 1)
        h = start
        while h < stop:
            seg, i = self._find(h)
            index = self._load_index(seg)
            n = min(len(index) - i, stop - h)
            lo = index[i]
            with open(seg.path, "rb", buffering=1 << 20) as f:
                f.seek(lo)
                pos = lo
                for k in range(n):
                    want = index[i + k]
                    if want != pos:
                        f.seek(want)
                        pos = want
                    head = f.read(FRAME_SIZE)
                    if len(head) < FRAME_SIZE:
                        raise StoreCorruptError(f"{seg.path}: record at offset {pos} is cut off")
                    length = int.from_bytes(head[:4], "big")
                    if not MIN_RECORD <= length <= MAX_RECORD:
                        raise StoreCorruptError(f"{seg.path}: bad record length at offset {pos}")
                    buf = head + f.read(length)
                    if not frame_ok(buf, 0, h):
                        raise StoreCorruptError(f"{seg.path}: record of height {h} at offset "
                                                f"{pos} is damaged (checksum or height)")
                    rec = buf[FRAME_SIZE:]
                    pos += FRAME_SIZE + length
                    h += 1
                    yield rec

    # --- pruning and closing ---------------------------------------------------------

    def prune_before(self, height: int) -> int:
        """Delete whole segments whose blocks are all below ``height``; return bytes freed.

        The last segment is never deleted. Oldest segments go first, so a crash midway
        leaves a contiguous store.

        Raises:
            StoreError: the store is read-only.
        """
        if self.options.read_only:
            raise StoreError(f"{self.directory}: store is read-only")
        freed = 0
        while len(self._segments) > 1 and self._segments[1].first <= height:
            seg = self._segments.pop(0)
            fd = self._readers.pop(seg.path, None)
            if fd is not None:
                os.close(fd)
            freed += seg.path.stat().st_size
            seg.path.unlink()
            if seg.idx_path.exists():
                freed += seg.idx_path.stat().st_size
                seg.idx_path.unlink()
            log.info("pruned segment %s (heights %d..%d)", seg.path.name, seg.first,
                     self._segments[0].first - 1)
        if freed:
            fsync_dir(self.directory / SEGMENT_DIR)
        return freed

    def close(self) -> None:
        """Settle blocks in flight, stop the sync thread, release files and the writer
        lock. Idempotent."""
        if self._unsynced and not self._closed:
            self.drain()
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._sync_thread is not None:
            self._sync_thread.join()
            self._sync_thread = None
        for fd in (self._fd, self._idx_fd, self._lock_fd, *self._readers.values()):
            if fd is not None:
                os.close(fd)
        self._fd = self._idx_fd = self._lock_fd = None
        self._readers.clear()
        self._closed = True

    def __enter__(self) -> BlockStore:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BlockStore({str(self.directory)!r}, height={self.height})"
