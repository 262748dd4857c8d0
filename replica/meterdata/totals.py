"""Day and month totals from intervals (docs/intervals.md I7). Pure."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from replica.meterdata.errors import MeterDataInputError
from replica.meterdata.intervals import Interval, Quality


@dataclass(frozen=True, slots=True)
class PeriodTotal:
    """The energy of one period (a local day or month) from its intervals.

    ``wh`` is the sum, or None when any interval is missing; ``known_wh`` sums the
    intervals that have a value; ``quality`` is the worst quality among the intervals
    (measured < substituted < estimated < missing); ``counts`` counts each quality.
    """

    label: str
    start_ms: int
    end_ms: int
    wh: int | None
    known_wh: int
    quality: Quality
    intervals: int
    counts: dict[str, int]


_RANK = {Quality.MEASURED: 0, Quality.SUBSTITUTED: 1, Quality.ESTIMATED: 2, Quality.MISSING: 3}


def aggregate(
    intervals: Sequence[Interval], periods: Sequence[tuple[str, int, int]]
) -> list[PeriodTotal]:
    """Totals of ``intervals`` over ``periods`` given as ``(label, start_ms, end_ms)``.

    Each period sums the intervals that lie entirely inside it (a
    :class:`replica.meterdata.calendar.Period` is such a triple). Raises
    :class:`MeterDataInputError` when an interval straddles a period's edge (the
    period is not on the interval grid).
    """
    out: list[PeriodTotal] = []
    starts = [i.start_ms for i in intervals]
    for label, ps, pe in periods:
        lo = bisect_left(starts, ps)
        hi = bisect_left(starts, pe)
        part = intervals[lo:hi]
        if (lo > 0 and intervals[lo - 1].end_ms > ps) or (part and part[-1].end_ms > pe):
            raise MeterDataInputError(
                "period", label, "does not start and end on the interval grid"
            )
        counts = {q.value: 0 for q in Quality}
        known = 0
        worst = Quality.MEASURED
        for iv in part:
            counts[iv.quality.value] += 1
            if iv.wh is not None:
                known += iv.wh
            if _RANK[iv.quality] > _RANK[worst]:
                worst = iv.quality
        if not part:
            worst = Quality.MISSING
        missing = counts[Quality.MISSING.value] > 0 or not part
        out.append(
            PeriodTotal(label, ps, pe, None if missing else known, known, worst, len(part), counts)
        )
    return out
