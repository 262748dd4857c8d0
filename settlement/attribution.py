"""Who covered whom under a pooled rule, over a whole period.

A pooled rule (pro rata, static keys, cascade) covers consumer j in interval t with
energy from every producer p in proportion to the producer's used energy: the exact
share is ``covered_j(t) * used_p(t) / U(t)`` with ``U(t)`` the interval's total
coverage. Over the period the pair's energy is ``X[p][j] = sum_t`` of those shares.
To keep the cost per interval proportional to the members (not members x producers)
the shares are computed in fixed point and rounded once per period:

1. ``w_p(t) = floor(used_p(t) * 2^32 / U(t))`` per interval with ``U(t) > 0``;
2. ``Y[p][j] = sum_t w_p(t) * covered_j(t)`` (exact integers), ``F = floor(Y / 2^32)``;
3. the rows must sum to ``R_p = sum_t used_p(t)`` and the columns to
   ``S_j = sum_t covered_j(t)``: ``F`` falls short of both (never exceeds them), and
   the shortfalls are filled by the north-west corner rule, producers and consumers
   in id order: take the first producer and consumer still short, add the smaller
   shortfall, move on.

The result has exact margins (every covered Wh attributed to one producer, every
used Wh to one consumer) and each pair is within the shortfalls of its exact share.
Step 2 packs a consumer vector into one integer so each interval costs one
multiplication per producer.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import add

from settlement.errors import SettlementError

SHIFT = 32
"""Fixed-point bits of the per-interval shares."""


class PoolAttribution:
    """Accumulates pooled intervals; :meth:`pairs` gives the period's attribution."""

    def __init__(self, consumers: int, producers: int, max_covered: int,
                 intervals: int) -> None:
        bits = SHIFT + max(1, max_covered).bit_length() + max(1, intervals).bit_length() + 1
        self._width = (bits + 7) // 8
        self._n = consumers
        self._acc = [0] * producers
        self.rows = [0] * producers
        self.columns = [0] * consumers

    def add(self, covered: Sequence[int], used: Sequence[int]) -> None:
        """Add one interval's coverage per consumer and use per producer (same total)."""
        total = sum(covered)
        if not total:
            return
        w = self._width
        packed = int.from_bytes(b"".join(v.to_bytes(w, "little") for v in covered), "little")
        acc, rows = self._acc, self.rows
        for p, u in enumerate(used):
            if u:
                acc[p] += ((u << SHIFT) // total) * packed
                rows[p] += u
        self.columns = list(map(add, self.columns, covered))

    def pairs(self) -> dict[tuple[int, int], int]:
        """``(producer, consumer) -> Wh`` for every nonzero pair."""
        w, n = self._width, self._n
        floor: dict[tuple[int, int], int] = {}
        row_short = list(self.rows)
        col_short = list(self.columns)
        for p, acc in enumerate(self._acc):
            if not acc:
                continue
            raw = acc.to_bytes(w * n, "little")
            for j in range(n):
                y = int.from_bytes(raw[j * w:(j + 1) * w], "little") >> SHIFT
                if y:
                    floor[(p, j)] = y
                    row_short[p] -= y
                    col_short[j] -= y
        p = j = 0
        while p < len(row_short) and j < n:
            if not row_short[p]:
                p += 1
                continue
            if not col_short[j]:
                j += 1
                continue
            q = min(row_short[p], col_short[j])
            floor[(p, j)] = floor.get((p, j), 0) + q
            row_short[p] -= q
            col_short[j] -= q
        if any(row_short) or any(col_short):
            raise SettlementError("pool attribution margins do not close (a bug)")
        return floor
