"""Turns pending readings into signed blocks by the sealing policy and commits them.

Policy (``[sealing]``): a block is sealed as soon as ``max_readings`` readings are
pending, or ``interval_s`` after the first pending reading was taken, whichever comes
first. Every reading gets a fresh random 16-byte salt (``os.urandom``); with
``seal_to_utility`` the payload is sealed to the utility's X25519 key with a fresh
ephemeral key per block.

Time never goes backwards in the chain: a block's span runs from the gateway time the
first of its readings was taken to the time the last was taken, clamped to start no
earlier than the previous block ended (after a clock step back, spans stay at the
previous end until the clock catches up). Readings keep the timestamps they were
taken with.

Disk full: when the store raises :class:`~agent.errors.StoreFullError` the block is
discarded unsaved, its readings go back to the front of the pending queue and commits
are retried every ``retry_interval_s`` while polling goes on. Pending readings are
bounded by ``max_pending_readings``; beyond it the OLDEST PENDING readings are dropped,
counted and logged as critical. Committed readings are never dropped. Any other store
failure is raised (:class:`~agent.errors.StoreError`): the daemon stops and its restart
recovers the store's tail.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import nacl.signing

from agent.config import SealingConfig
from agent.errors import StoreError, StoreFullError
from agent.ledger import SALT_SIZE, Block, ChainHead, Reading, seal_block

log = logging.getLogger("meterchain.sealer")


class BlockSink(Protocol):
    """What the sealer needs of the block store."""

    @property
    def head(self) -> ChainHead | None: ...

    def append(self, block: Block) -> None: ...

    async def append_async(self, block: Block) -> None: ...


class Sealer:
    """Holds pending readings and seals them into committed blocks; see module docs."""

    def __init__(
        self,
        cfg: SealingConfig,
        store: BlockSink,
        signing_key: bytes,
        *,
        recipient_key: bytes | None = None,
        on_commit: Callable[[Block], None] | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self._key = nacl.signing.SigningKey(signing_key)  # derived once, not per block
        self.recipient_key = recipient_key
        self.on_commit = on_commit
        self._wall = wall
        self._mono = mono
        self._pending: deque[tuple[Reading, int]] = deque()
        self._first_pending_mono: float | None = None
        self._wake = asyncio.Event()
        self._retry_at: float | None = None
        self.blocks_committed = 0
        self.readings_committed = 0
        self.dropped_readings = 0
        self.commit_failures = 0
        self.store_full = False
        self.last_error: str | None = None
        self.heartbeat = mono()

    # --- input ---------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, readings: Sequence[Reading], taken_ms: int) -> None:
        """Queue readings taken at gateway time ``taken_ms`` (called by the poller)."""
        if not readings:
            return
        if not self._pending:
            self._first_pending_mono = self._mono()
        self._pending.extend((r, taken_ms) for r in readings)
        over = len(self._pending) - self.cfg.max_pending_readings
        if over > 0:
            for _ in range(over):
                self._pending.popleft()
            self.dropped_readings += over
            log.critical("%d pending reading(s) dropped (oldest first): %d are held in "
                         "memory at most (sealing.max_pending_readings) and the store has "
                         "not accepted a block since (%s); %d dropped in total", over,
                         self.cfg.max_pending_readings, self.last_error or "store failing",
                         self.dropped_readings)
        if len(self._pending) >= self.cfg.max_readings:
            self._wake.set()

    # --- policy --------------------------------------------------------------------

    def due(self) -> bool:
        """True when the policy says a block should be sealed now."""
        if not self._pending:
            return False
        if self._retry_at is not None and self._mono() < self._retry_at:
            return False
        if len(self._pending) >= self.cfg.max_readings:
            return True
        assert self._first_pending_mono is not None
        return self._mono() - self._first_pending_mono >= self.cfg.interval_s

    def _next_wake(self) -> float:
        """Seconds until the policy may next be due (bounded for the heartbeat)."""
        waits = [1.0]
        if self._retry_at is not None:
            waits.append(self._retry_at - self._mono())
        elif self._first_pending_mono is not None and self._pending:
            waits.append(self._first_pending_mono + self.cfg.interval_s - self._mono())
        return max(0.01, min(waits))

    async def run(self, stop: asyncio.Event) -> None:
        """Seal by policy until ``stop`` is set (the caller then calls :meth:`flush`)."""
        while not stop.is_set():
            self.heartbeat = self._mono()
            self._wake.clear()
            while self.due():
                if not await self.seal_some_async():
                    break
                await asyncio.sleep(0)  # let polls and forwarders run between blocks
            stop_wait = asyncio.ensure_future(stop.wait())
            wake_wait = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({stop_wait, wake_wait}, timeout=self._next_wake(),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_wait.cancel()
                wake_wait.cancel()

    def flush(self) -> int:
        """Seal and commit everything pending, ignoring the policy (shutdown).

        Returns the number of readings left uncommitted (the store refused them).
        """
        self._retry_at = None
        while self._pending:
            if not self.seal_some():
                break
        left = len(self._pending)
        if left:
            log.critical("%d pending reading(s) could not be committed at shutdown: %s",
                         left, self.last_error)
        return left

    # --- sealing -------------------------------------------------------------------

    def seal_some(self) -> bool:
        """Seal up to ``max_readings`` pending readings into one block and commit it.

        Returns True if a block was committed, False if the store refused it (the
        readings are back in the queue and a retry is scheduled).

        Raises:
            ChainError: the block does not link onto the store's head (a bug).
            StoreError: the store failed other than by being full.
        """
        block, batch = self._seal_next()
        try:
            self.store.append(block)
        except (StoreFullError, OSError) as exc:
            return self._refused(batch, exc)
        self._committed(block, len(batch))
        return True

    async def seal_some_async(self) -> bool:
        """As :meth:`seal_some`, with the commit's fsync waiting off the event loop."""
        block, batch = self._seal_next()
        try:
            await self.store.append_async(block)
        except asyncio.CancelledError:  # shutdown: the store finished or undid the commit
            head = self.store.head
            if head is not None and head.hash == block.hash:
                self._committed(block, len(batch))
            else:
                self._pending.extendleft(reversed(batch))
            raise
        except (StoreFullError, OSError) as exc:
            return self._refused(batch, exc)
        self._committed(block, len(batch))
        return True

    def _seal_next(self) -> tuple[Block, list[tuple[Reading, int]]]:
        """Take up to ``max_readings`` pending readings and seal the next block of them."""
        n = min(len(self._pending), self.cfg.max_readings)
        batch = [self._pending.popleft() for _ in range(n)]
        head = self.store.head
        prev = head.header if head else None
        start = min(t for _, t in batch)
        end = max(t for _, t in batch)
        if prev is not None:
            start = max(start, prev.time_end_ms)
        end = max(end, start)
        readings = [r for r, _ in batch]
        buf = os.urandom(SALT_SIZE * len(batch))  # one getrandom call per block
        salts = [buf[i : i + SALT_SIZE] for i in range(0, len(buf), SALT_SIZE)]
        block = seal_block(
            self._key, prev, readings, salts, start, end,
            recipient_key=self.recipient_key,
            ephemeral_sk=os.urandom(32) if self.recipient_key else None,
        )
        return block, batch

    def _refused(self, batch: list[tuple[Reading, int]], exc: Exception) -> bool:
        """Put the batch back; False when the store is full, raise when it is broken."""
        self._pending.extendleft(reversed(batch))
        if isinstance(exc, StoreFullError):
            self._commit_failed(exc)
            return False
        self.last_error = str(exc)  # an OSError escaped the store: its state is unknown
        raise StoreError(f"store write failed ({exc}); the store must be reopened "
                         "(restart recovers its tail)") from exc

    def _committed(self, block: Block, n: int) -> None:
        if self.store_full or self.commit_failures:
            log.warning("store accepts blocks again; committed block %d", block.height)
        self.store_full = False
        self.commit_failures = 0
        self._retry_at = None
        self.last_error = None
        self.blocks_committed += 1
        self.readings_committed += n
        self._first_pending_mono = self._mono() if self._pending else None
        if self.on_commit is not None:
            self.on_commit(block)

    def _commit_failed(self, exc: StoreFullError) -> None:
        self.store_full = True
        self.commit_failures += 1
        self.last_error = str(exc)
        self._retry_at = self._mono() + self.cfg.retry_interval_s
        level = logging.CRITICAL if self.commit_failures == 1 or (
            self.commit_failures % 100 == 0) else logging.DEBUG
        log.log(level, "cannot commit a block (%s); holding %d pending reading(s) in memory "
                "(limit %d), polling goes on, retrying every %.1f s", exc, len(self._pending),
                self.cfg.max_pending_readings, self.cfg.retry_interval_s)

    def to_json(self) -> dict[str, Any]:
        return {
            "pending_readings": len(self._pending),
            "blocks_committed": self.blocks_committed,
            "readings_committed": self.readings_committed,
            "dropped_readings": self.dropped_readings,
            "commit_failures": self.commit_failures,
            "store_full": self.store_full,
            "last_error": self.last_error,
        }
