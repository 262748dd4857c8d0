"""The disk reserve: space held back on the ledger's filesystem for when the disk is full.

``LEDGER/RESERVE`` is a preallocated file of ``retention.reserve_bytes`` (not part of the
ledger: readers ignore it, ``disk_usage`` does not count it). Policy (``docs/agent.md``,
"Disk full"):

- **held**: the file has its full size; the store writes blocks as usual.
- a write of the agent fails for lack of space (a block, a replica cursor, status.json)
  -> :meth:`DiskReserve.disk_full` **releases** it (deletes the file) and the store keeps
  that many bytes free from then on (:meth:`BlockStore.keep_free`): blocks are written
  only into space beyond the reserve, so the cursors and the status file can still be
  written and retention can prune. The failed small write is retried at once
  (:meth:`DiskReserve.write_small`).
- :meth:`DiskReserve.check` (every ``sealing.retry_interval_s``): once the filesystem has
  twice the reserve free again (pruning, or an operator freed space), the file is
  allocated again (**held**) and the store's floor is lifted.
- :meth:`DiskReserve.stopping` (SIGTERM): the reserve's space is now for the readings
  still pending: the floor drops to what the cursors and the final status need, and a
  disk full during the stop releases the reserve straight into that mode.

With ``reserve_bytes = 0`` there is no file and nothing is held back: a full disk then
also refuses cursors and the status file (retried, never fatal).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ledger.errors import StoreError, StoreFullError

log = logging.getLogger("meterchain.reserve")

RESERVE_FILE = "RESERVE"
MAX_SHARE = 8
"""The reserve takes at most 1/MAX_SHARE of its filesystem (a larger size is lowered)."""
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
T = TypeVar("T")


class FloorStore(Protocol):
    """What the reserve needs of the block store."""

    def keep_free(self, nbytes: int | None, reason: str = "") -> None: ...

    def free_bytes(self) -> int: ...


def is_disk_full(exc: BaseException) -> bool:
    """True for the errors a write raises when the disk (or the quota) is full."""
    return isinstance(exc, StoreFullError) or (
        isinstance(exc, OSError) and exc.errno in NO_SPACE)


class DiskReserve:
    """The reserve file of one ledger directory; see the module docstring.

    Touched only from the event loop's thread.
    """

    def __init__(self, directory: str | os.PathLike[str], size: int, store: FloorStore, *,
                 wall: Callable[[], float] = time.time) -> None:
        """Raises OSError when ``directory`` cannot be examined."""
        self.path = Path(directory) / RESERVE_FILE
        st = os.statvfs(self.path.parent)
        limit = st.f_blocks * st.f_frsize // MAX_SHARE // 4096 * 4096
        if size > limit:
            log.warning("retention.reserve_bytes = %d is more than 1/%d of the filesystem of "
                        "%s (%d bytes); holding %d bytes instead", size, MAX_SHARE,
                        self.path.parent, st.f_blocks * st.f_frsize, limit)
            size = limit
        self.size = size
        self.store = store
        self._wall = wall
        self.held = False
        """The file exists with its full size allocated."""
        self.releases = 0
        """How often the reserve was released since start."""
        self.released_ms: int | None = None
        """When it was last released (None while held or never)."""
        self._stop_keep: int | None = None  # set by stopping()
        self._dev = os.stat(self.path.parent).st_dev

    @property
    def released(self) -> bool:
        """True while the disk is full as far as the reserve knows (a reserve is
        configured and not held)."""
        return self.size > 0 and not self.held

    # --- the file ------------------------------------------------------------------

    def establish(self) -> bool:
        """Allocate the reserve file (again); returns whether it is held now.

        Failing for lack of space leaves it released (the partial file removed; retried
        by :meth:`check`); any other failure is logged and the agent goes on without a
        reserve (``size`` becomes 0).
        """
        if self.size <= 0:
            try:
                self.path.unlink(missing_ok=True)  # left from a run with a reserve
            except OSError as exc:
                log.warning("%s: cannot remove the old disk reserve: %s", self.path,
                            exc.strerror)
            return False
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size > self.size:
                    os.ftruncate(fd, self.size)
                os.posix_fallocate(fd, 0, self.size)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):  # the error below says what failed
                self.path.unlink(missing_ok=True)
            if exc.errno not in NO_SPACE:  # not a full disk: go on without a reserve
                log.error("%s: cannot allocate the disk reserve (%s); running without one",
                          self.path, exc.strerror)
                self.size = 0
                self.released_ms = None
                self.store.keep_free(None)
                return False
            if self.released_ms is None:
                log.critical("disk full: no room for the disk reserve of %d bytes (%s); new "
                             "blocks wait (readings are held in memory) until %d bytes are "
                             "free", self.size, self.path, 2 * self.size)
            if self.released_ms is None:
                self.released_ms = int(self._wall() * 1000)
            self._released_floor()
            return False
        was_released = self.released_ms is not None
        self.held = True
        self.released_ms = None
        self.store.keep_free(None)
        if was_released:
            log.warning("disk reserve of %d bytes allocated again (%s); the store accepts "
                        "blocks again", self.size, self.path)
        return True

    def disk_full(self, where: str, error: object = "no space left on device") -> bool:
        """A write to ``where`` failed with ``error`` for lack of space: release the
        reserve if held.

        Returns True if space was freed for that write to be retried (the reserve was
        held); when stopping, it is also free for blocks.
        """
        if not self.held:
            return False
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("%s: cannot release the disk reserve: %s", self.path, exc.strerror)
            return False
        self.held = False
        self.releases += 1
        self.released_ms = int(self._wall() * 1000)
        self._released_floor()
        log.critical("disk full (writing %s: %s): released the disk reserve of %d bytes for "
                     "cursors, status and a clean stop; new blocks wait (readings are held in "
                     "memory) until %d bytes are free again", where, error, self.size,
                     2 * self.size)
        return True

    def _released_floor(self) -> None:
        if self._stop_keep is not None:
            self.store.keep_free(self._stop_keep, "stopping on a full disk: the rest of the "
                                 "reserve is kept for the cursors and the final status")
        elif self.size > 0:
            self.store.keep_free(self.size, "disk full: the disk reserve is released and "
                                 "kept free for cursors and status")

    def check(self) -> bool:
        """Re-establish a released reserve once twice its size is free; returns whether
        it is held. Cheap (one statvfs) while held or short of space."""
        if self.held and not self.path.exists():
            log.warning("%s: the disk reserve file was removed; it is allocated again once "
                        "%d bytes are free", self.path, 2 * self.size)
            self.held = False
            self.released_ms = int(self._wall() * 1000)
            self._released_floor()
        if self.held or self.size <= 0 or self._stop_keep is not None:
            return self.held
        try:
            free = self.store.free_bytes()
        except OSError as exc:
            log.warning("cannot measure free space for the disk reserve: %s", exc.strerror)
            return False
        if free < 2 * self.size:
            return False
        return self.establish()

    def stopping(self, keep_free: int) -> None:
        """From now on the reserve's space is for the pending readings: keep only
        ``keep_free`` bytes free for the cursors and the final status."""
        self._stop_keep = keep_free
        if self.released:
            self._released_floor()

    # --- small writes --------------------------------------------------------------

    def write_small(self, write: Callable[[], T], where: str | os.PathLike[str]) -> T:
        """Run ``write`` (of a small file ``where``); if the disk is full and the file is
        on the reserve's filesystem, release the reserve and retry once.

        Raises:
            What ``write`` raises when the retry fails too, or space was not freed.
        """
        try:
            return write()
        except (StoreError, OSError) as exc:
            if not is_disk_full(exc) or not self._same_fs(where):
                raise
            if not self.disk_full(str(where), exc):
                raise
        return write()

    def _same_fs(self, where: str | os.PathLike[str]) -> bool:
        try:
            return os.stat(Path(where).parent).st_dev == self._dev
        except OSError:
            return False

    def to_json(self) -> dict[str, Any]:
        """Status fields: ``reserve_bytes`` (configured), ``reserve_held``,
        ``reserve_releases``, ``reserve_released_ms``."""
        return {
            "reserve_bytes": self.size,
            "reserve_held": self.held,
            "reserve_releases": self.releases,
            "reserve_released_ms": self.released_ms,
        }
