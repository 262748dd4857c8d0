"""Disk budget and pruning of the block store.

Policy (documented in ``docs/agent.md``): every ``check_interval_s`` the agent measures
the store. While it uses no more than ``disk_budget_bytes`` nothing is pruned. Above
the budget, every block that is (a) acknowledged by EVERY required replica (their
cursors in the state DB, which only ever lag the truth) and (b) ended more than
``min_age_s`` ago may go; the store drops whole segments below that height (the last
segment is never dropped). Unacknowledged or young blocks are never pruned: if the
store is still over budget after pruning, the agent keeps recording as long as the disk
allows and reports a critical status naming the replicas holding it back. With no
required replica configured, every block counts as acknowledged (a stand-alone gateway
keeps a rolling window of at least ``min_age_s``).

While the disk is full (``disk_full()`` is true: the agent's disk reserve is released)
the same blocks are pruned even below the budget, so a full disk frees itself of what
the replicas already hold. Pruning deletes whole files and needs no free space; the
acknowledged heights come from ``cursors``, which the daemon answers from the
forwarders' memory, so pruning never waits for a cursor write to succeed.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.service.config import RetentionConfig
from ledger import Block

log = logging.getLogger("meterchain.retention")


class PrunableStore(Protocol):
    directory: Any

    @property
    def height(self) -> int: ...

    @property
    def first_height(self) -> int: ...

    def get(self, height: int) -> Block: ...

    def disk_usage(self) -> int: ...

    def prune_before(self, height: int) -> int: ...


class CursorSource(Protocol):
    def cursor(self, replica_name: str) -> int: ...


@dataclass
class RetentionState:
    used_bytes: int = 0
    free_bytes: int | None = None
    pruned_bytes: int = 0
    over_budget: bool = False
    problem: str | None = None


class Retention:
    """Applies the retention policy to one store; see the module docstring."""

    def __init__(self, cfg: RetentionConfig, store: PrunableStore, cursors: CursorSource,
                 required: Sequence[str], *, optional: Sequence[str] = (),
                 disk_full: Callable[[], bool] = lambda: False,
                 wall: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.disk_full = disk_full
        self.store = store
        self.cursors = cursors
        self.required = list(required)
        self.optional = list(optional)
        self._wall = wall
        self.state = RetentionState()

    def acknowledged(self) -> int:
        """Highest height every required replica acknowledged (-1: none)."""
        if not self.required:
            return self.store.height
        return min(self.cursors.cursor(name) for name in self.required)

    def _age_bound(self, upto: int) -> int:
        """Lowest height in [first, upto] whose block ended within ``min_age_s`` (or upto+1)."""
        cutoff_ms = int((self._wall() - self.cfg.min_age_s) * 1000)
        lo, hi = self.store.first_height, upto + 1
        while lo < hi:  # time_end_ms is non-decreasing along the chain
            mid = (lo + hi) // 2
            if self.store.get(mid).header.time_end_ms > cutoff_ms:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def measure(self) -> RetentionState:
        """Refresh disk use and free space (cheap: a few stat calls)."""
        st = self.state
        st.used_bytes = self.store.disk_usage()
        try:
            st.free_bytes = shutil.disk_usage(self.store.directory).free
        except OSError as exc:
            log.warning("cannot measure free space of %s: %s", self.store.directory, exc)
            st.free_bytes = None
        return st

    def check(self) -> RetentionState:
        """Measure, prune what the policy allows when over budget or the disk is full,
        update ``state``.

        Raises:
            StoreError: the store cannot be read or pruned.
        """
        st = self.measure()
        budget = self.cfg.disk_budget_bytes
        full = self.disk_full()
        if (st.used_bytes > budget or full) and self.store.height >= 0:
            acked = min(self.acknowledged(), self.store.height)
            bound = self._age_bound(acked) if acked >= self.store.first_height else (
                self.store.first_height)
            if bound > self.store.first_height:
                first_before = self.store.first_height
                used_before = st.used_bytes
                freed = self.store.prune_before(bound)
                if freed:
                    st.pruned_bytes += freed
                    st.used_bytes = self.store.disk_usage()
                    why = ("acknowledged by every required replica" if self.required
                           else "no replica is required")
                    log.info("pruned %d bytes below height %d (%s, older than %.0f s)%s",
                             freed, self.store.first_height, why, self.cfg.min_age_s,
                             " because the disk is full" if full and used_before <= budget
                             else "")
                    self._warn_unsent(first_before, self.store.first_height)
        was_over = st.over_budget
        st.over_budget = st.used_bytes > budget
        if st.over_budget:
            st.problem = self._explain(budget)
            if not was_over:
                log.critical("%s", st.problem)
        else:
            if was_over:
                log.warning("store back within its disk budget (%d of %d bytes)",
                            st.used_bytes, budget)
            st.problem = None
        return st

    def _warn_unsent(self, first_before: int, first_now: int) -> None:
        """Say which optional replicas lost blocks they never acknowledged."""
        for name in self.optional:
            acked = self.cursors.cursor(name)
            if acked < first_now - 1:
                lost_from = max(acked + 1, first_before)
                log.warning("pruned blocks %d..%d before optional replica %s acknowledged "
                            "them (it acknowledged up to %d); it can no longer get them from "
                            "this gateway", lost_from, first_now - 1, name, acked)

    def _explain(self, budget: int) -> str:
        behind = [f"{n} (acked {self.cursors.cursor(n)})" for n in self.required
                  if self.cursors.cursor(n) < self.store.height]
        why = (f"not yet acknowledged by {', '.join(behind)}" if behind
               else f"younger than min_age_s={self.cfg.min_age_s:.0f}")
        return (f"disk budget reached: store uses {self.state.used_bytes} of {budget} bytes; "
                f"blocks {self.store.first_height}..{self.store.height} are {why}; recording "
                "continues while the disk allows")
