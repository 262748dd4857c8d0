"""Turns pending readings into signed blocks by the sealing policy and commits them.

Policy (``[sealing]``): a block is sealed as soon as ``max_readings`` readings are
pending, or ``interval_s`` after the first pending reading was taken, whichever comes
first. Every reading gets a fresh random 16-byte salt (``os.urandom``); with
``seal_to_utility`` the payload is sealed to the utility's X25519 key with a fresh
ephemeral key per block.

Commits are pipelined (group commit): a block is written to the store
(:meth:`~agent.storage.store.BlockStore.submit`) as soon as it is sealed, and the store's sync
thread fdatasyncs while writes arrive. Meanwhile the next due blocks are sealed onto it
(a block needs only the previous header, which exists before it is durable) and
written; the next fdatasync covers them all. At most ``max_blocks_in_flight`` blocks
wait for the disk; beyond that sealing waits. A block counts as committed
(``on_commit``, the forwarders, the counters) only once an fdatasync covering it has
returned. If a sync fails, the store cuts off every block it may not cover: their
readings go back to the front of the pending queue, in order, and are sealed again
(with fresh salts) later.

Time never goes backwards in the chain: a block's span runs from the gateway time the
first of its readings was taken to the time the last was taken, clamped to start no
earlier than the previous block ended (after a clock step back, spans stay at the
previous end until the clock catches up). Readings keep the timestamps they were
taken with.

Disk full: when the store raises :class:`~ledger.errors.StoreFullError` the block is
discarded unsaved, its readings go back to the front of the pending queue and commits
are retried every ``retry_interval_s`` while polling goes on. Pending readings are
bounded by ``max_pending_readings``; beyond it the OLDEST PENDING readings are dropped,
counted and logged as critical. Committed readings are never dropped. Each refusal is
passed to ``on_full`` (the daemon releases its disk reserve); when that says it made
room for blocks (only while stopping) the commit is retried at once. Any other store
failure is raised (:class:`~ledger.errors.StoreError`): the daemon stops and its restart
recovers the store's tail.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import nacl.signing

from agent.service.config import SealingConfig
from ledger import SALT_SIZE, Block, ChainHead, Reading, seal_block
from ledger.errors import StoreError, StoreFullError

log = logging.getLogger("meterchain.sealer")

_SEAL_SLICE_S = 0.002
"""A backlog is sealed in slices of about this long between yields to the event loop:
short enough for meter polls, long enough that the loop's turn does not cost more than
the sealing it interleaves with (a 64-reading block seals in ~0.2 ms here)."""


class BlockSink(Protocol):
    """What the sealer needs of the block store."""

    @property
    def head(self) -> ChainHead | None: ...

    @property
    def tip(self) -> ChainHead | None: ...

    def append_many(self, blocks: Sequence[Block]) -> None: ...

    def submit(self, blocks: Sequence[Block]) -> asyncio.Future[None]: ...

    def drain(self) -> None: ...


@dataclass
class _Sealed:
    """A signed block and the pending readings it holds, until it is durable."""

    block: Block
    batch: list[tuple[Reading, int]]
    since: float | None
    """When the oldest of these readings became pending (monotonic), for the policy."""
    future: asyncio.Future[None] | None = None
    """Done once the store made the block durable (or cut it off)."""
    submitted: float = 0.0
    """When it was written (monotonic), for the health heartbeat."""


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
        on_full: Callable[[StoreFullError], bool] | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self._key = nacl.signing.SigningKey(signing_key)  # derived once, not per block
        self.recipient_key = recipient_key
        self.on_commit = on_commit
        self.on_full = on_full
        """Called with each refusal for lack of space; returns True if it made room for
        blocks (then the commit is retried at once)."""
        self._room_made = False
        self._wall = wall
        self._mono = mono
        self._pending: deque[tuple[Reading, int]] = deque()
        self._first_pending_mono: float | None = None
        self._inflight: deque[_Sealed] = deque()  # written, not yet durable, in order
        self._waiter: asyncio.Future[None] | None = None  # run() sleeps on it
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
        """Readings not yet committed: waiting to be sealed, sealed, or being written."""
        return len(self._pending) + sum(len(s.batch) for s in self._inflight)

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
            self._kick()

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
        """Seal by policy until ``stop`` is set (the caller then calls :meth:`flush`).

        Blocks are written as soon as they are sealed and counted as committed once
        durable (see the module docs); on return every block written is settled.
        Cancelled, it waits for the store to settle the blocks in flight and puts the
        readings of every block that did not become durable back in front of the
        pending queue.

        Raises:
            StoreError: the store failed other than by being full.
        """
        loop = asyncio.get_running_loop()
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(self._kick)
        try:
            while not stop.is_set():
                self._beat()
                await self._seal_due()
                self._beat()
                if stop.is_set():
                    break
                # sleep until readings are due, a block is durable, or stop
                self._waiter = loop.create_future()
                timer = loop.call_later(self._next_wake(), self._kick)
                try:
                    await self._waiter
                finally:
                    timer.cancel()
                    self._waiter = None
            if self._inflight:
                await asyncio.wait([s.future for s in self._inflight if s.future])
                self._reap()
        except asyncio.CancelledError:
            self._settle_in_flight()
            raise
        finally:
            stopping.cancel()

    def _kick(self, _: object = None) -> None:
        """Wake :meth:`run` (readings due, a block durable, stop, the policy's timer)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _beat(self) -> None:
        """The health heartbeat: now, or when the oldest block still waiting for the disk
        was written (a stuck disk makes the sealer unhealthy while its loop runs on)."""
        now = self._mono()
        self.heartbeat = min(now, self._inflight[0].submitted) if self._inflight else now

    async def _seal_due(self) -> None:
        """Seal due blocks onto the tip and write them, up to ``max_blocks_in_flight``,
        yielding to the event loop at least every ``_SEAL_SLICE_S`` of sealing."""
        slice_end = self._mono() + _SEAL_SLICE_S
        while True:
            self._reap()
            if not self.due() or len(self._inflight) >= self.cfg.max_blocks_in_flight:
                return
            sealed = self._seal_next()
            try:
                fut = self.store.submit([sealed.block])
            except (StoreFullError, OSError) as exc:
                self._void([sealed], exc)
                return
            sealed.future, sealed.submitted = fut, self._mono()
            fut.add_done_callback(self._kick)
            self._inflight.append(sealed)
            if sealed.submitted >= slice_end:
                await asyncio.sleep(0)  # let polls, forwarders and the sync's news run
                slice_end = self._mono() + _SEAL_SLICE_S

    def _reap(self) -> None:
        """Count the blocks that became durable, in order; when the store cut blocks off
        (a failed sync), take their readings back.

        Raises:
            StoreError: the store failed other than by being full.
        """
        while self._inflight:
            fut = self._inflight[0].future
            assert fut is not None
            if not fut.done():
                return
            exc = fut.exception()
            if exc is None:
                self._committed(self._inflight.popleft())
                continue
            # the store cut off this block and every one written after it
            void = list(self._inflight)
            self._inflight.clear()
            for s in void:
                if s.future is not None and s.future.done():
                    s.future.exception()  # retrieved: they failed as one
            if isinstance(exc, StoreFullError | OSError):
                self._void(void, exc)
                return
            self._requeue(void)
            self.last_error = str(exc)
            raise exc

    def _settle_in_flight(self) -> None:
        """Cancelled (shutdown): let the store settle what is in flight; never raises."""
        if not self._inflight:
            return
        self.store.drain()
        try:
            self._reap()  # drained: every block in flight is durable or cut off
        except StoreError as exc:
            log.critical("blocks in flight at shutdown were not committed: %s", exc)

    def flush(self) -> int:
        """Seal and commit everything pending, ignoring the policy (shutdown).

        Call it when :meth:`run` has returned or was cancelled. Returns the number of
        readings left uncommitted (the store refused them).
        """
        self._retry_at = None
        self._settle_in_flight()
        while self._pending:
            if not self.seal_some() and not self._room_made:
                break
        left = self.pending
        if left:
            log.critical("%d pending reading(s) could not be committed at shutdown and are "
                         "lost: %s", left, self.last_error)
        return left

    # --- sealing -------------------------------------------------------------------

    def seal_some(self) -> bool:
        """Seal up to ``max_readings`` pending readings into one block and commit it
        synchronously (one fdatasync).

        Returns True if a block was committed, False if the store refused it (the
        readings are back in the queue and a retry is scheduled).

        Raises:
            ChainError: the block does not link onto the store's head (a bug).
            StoreError: the store failed other than by being full, or blocks written by
                :meth:`run` are still in flight.
        """
        if self._inflight:
            raise StoreError("blocks are in flight; let Sealer.run finish first")
        sealed = self._seal_next()
        try:
            self.store.append_many([sealed.block])
        except (StoreFullError, OSError) as exc:
            return self._void([sealed], exc)
        self._committed(sealed)
        return True

    def _seal_next(self) -> _Sealed:
        """Take up to ``max_readings`` pending readings and seal the next block of them
        onto the store's tip (the last block written, durable or not)."""
        n = min(len(self._pending), self.cfg.max_readings)
        batch = [self._pending.popleft() for _ in range(n)]
        since = self._first_pending_mono
        self._first_pending_mono = self._mono() if self._pending else None
        tip = self.store.tip
        prev = tip.header if tip else None
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
        return _Sealed(block, batch, since)

    def _requeue(self, void: list[_Sealed]) -> None:
        """Put the readings of blocks that never became durable back in front, in order."""
        if not void:
            return
        self._pending.extendleft(reversed([r for s in void for r in s.batch]))
        since = [t for t in (void[0].since, self._first_pending_mono) if t is not None]
        self._first_pending_mono = min(since) if since else self._mono()

    def _void(self, void: list[_Sealed], exc: Exception) -> bool:
        """The store refused a commit: requeue; False when it is full, raise when broken."""
        self._requeue(void)
        if isinstance(exc, StoreFullError):
            self._commit_failed(exc)
            return False
        self.last_error = str(exc)  # an OSError escaped the store: its state is unknown
        raise StoreError(f"store write failed ({exc}); the store must be reopened "
                         "(restart recovers its tail)") from exc

    def _committed(self, sealed: _Sealed) -> None:
        block = sealed.block
        if self.store_full or self.commit_failures:
            log.warning("store accepts blocks again; committed block %d", block.height)
        self.store_full = False
        self.commit_failures = 0
        self._retry_at = None
        self.last_error = None
        self.blocks_committed += 1
        self.readings_committed += len(sealed.batch)
        if self.on_commit is not None:
            self.on_commit(block)

    def _commit_failed(self, exc: StoreFullError) -> None:
        self.store_full = True
        self.commit_failures += 1
        self.last_error = str(exc)
        self._room_made = bool(self.on_full(exc)) if self.on_full is not None else False
        self._retry_at = None if self._room_made else (
            self._mono() + self.cfg.retry_interval_s)
        level = logging.CRITICAL if self.commit_failures == 1 or (
            self.commit_failures % 100 == 0) else logging.DEBUG
        log.log(level, "cannot commit a block (%s); holding %d pending reading(s) in memory "
                "(limit %d), polling goes on, retrying every %.1f s", exc, len(self._pending),
                self.cfg.max_pending_readings, self.cfg.retry_interval_s)

    def to_json(self) -> dict[str, Any]:
        return {
            "pending_readings": self.pending,
            "blocks_in_flight": len(self._inflight),
            "blocks_committed": self.blocks_committed,
            "readings_committed": self.readings_committed,
            "dropped_readings": self.dropped_readings,
            "commit_failures": self.commit_failures,
            "store_full": self.store_full,
            "last_error": self.last_error,
        }
