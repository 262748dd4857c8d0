"""Interval energy from cumulative register readings (the E of VEE).

Pure: readings in, intervals out. No file, database, socket or clock (time is an
argument). docs/intervals.md is the normative description; section numbers below
(I1, I2, ...) refer to it.

The method in one paragraph: the register value at every boundary of a UTC grid is
fixed first -- from a reading within the tolerance window of the boundary (I2), by
linear interpolation floored to whole Wh between the readings on either side of a gap
of at most ``max_linear_gap_ms`` (I3), or for a longer gap by distributing the register
difference across the gap over its pieces in proportion to comparable days, with
largest-remainder rounding (I4). Every interval is then the difference of the register
values at its two boundaries, so the intervals of any span sum exactly to the
difference of the boundary values at its ends (they telescope); nothing is created or
lost by rounding.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from itertools import compress, repeat
from operator import add, le, ne, not_, sub
from zoneinfo import ZoneInfo

from replica.meterdata.errors import MeterDataInputError
from replica.meterdata.estimate import (
    NEAREST_DAY_SHIFTS_MS,
    PROFILE_LOOKBACK_MS,
    RULE_COMPARABLE_DAYS,
    RULE_LINEAR_NO_PROFILE,
    SAME_WEEKDAY_SHIFTS_MS,
    estimate_gap,
    largest_remainder,
)
from replica.meterdata.gcpause import collector_paused
from replica.meterdata.vee import (
    Finding,
    Origin,
    PowerSample,
    RegisterColumns,
    RegisterSample,
    Screened,
    new_origin,
    new_origins,
    screen,
)

#: Version of the rules in docs/intervals.md; fixtures and exports carry it. Any change
#: that can change a computed value (rounding, tolerance, estimation) bumps it.
RULES_VERSION = 1

MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000

#: Default longest gap between two readings that is bridged linearly (ElWG section 55,
#: BDEW MeteringCode: two hours).
DEFAULT_MAX_LINEAR_GAP_MS = 2 * MS_PER_HOUR


class Quality(enum.StrEnum):
    """How an interval's value was obtained (docs/intervals.md I5)."""

    MEASURED = "measured"
    SUBSTITUTED = "substituted"
    ESTIMATED = "estimated"
    MISSING = "missing"


# --- rule codes (stable, docs/intervals.md I5) ------------------------------------------
RULE_LINEAR = "linear"
RULE_NO_EARLIER_READING = "no-earlier-reading"
RULE_NO_LATER_READING = "no-later-reading"
RULE_METER_EXCHANGE = "meter-exchange"

RULES = (
    RULE_LINEAR,
    RULE_COMPARABLE_DAYS,
    RULE_LINEAR_NO_PROFILE,
    RULE_NO_EARLIER_READING,
    RULE_NO_LATER_READING,
    RULE_METER_EXCHANGE,
)


@dataclass(frozen=True, slots=True)
class Interval:
    """Energy in ``[start_ms, end_ms)`` in Wh; ``wh`` is None only for MISSING.

    ``rule`` is None exactly when the quality is MEASURED. ``start_trace`` and
    ``end_trace`` are the readings behind each boundary: one reading for a boundary read
    within tolerance, the two anchors either side of the gap otherwise, none when the
    boundary has no value.
    """

    start_ms: int
    end_ms: int
    wh: int | None
    quality: Quality
    rule: str | None
    start_trace: tuple[Origin, ...]
    end_trace: tuple[Origin, ...]


@dataclass(frozen=True, slots=True)
class IntervalSeries:
    """The intervals of ``[start_ms, end_ms)`` and the findings that concern them."""

    start_ms: int
    end_ms: int
    interval_ms: int
    intervals: tuple[Interval, ...]
    findings: tuple[Finding, ...]
    boundaries: tuple[Boundary, ...] = ()


@dataclass(frozen=True, slots=True)
class Boundary:
    """The register value at one grid boundary (docs/intervals.md I2-I4).

    ``how`` is ``read`` (a reading within tolerance), ``linear``, ``estimated`` or
    ``none`` (no value: ``wh`` and ``series`` are None and ``rule`` says why).
    ``wh`` is in the unwrapped scale of series number ``series`` (a new series starts
    at each meter exchange; rollovers before it have added the modulus), so only
    differences of two boundaries of the same series are energies.
    """

    at_ms: int
    wh: int | None
    how: str
    series: int | None
    rule: str | None
    trace: tuple[Origin, ...]


# The generated __init__ of a frozen dataclass sets each field through
# object.__setattr__; setting the slots through their descriptors builds the same object
# in about half the time, which matters at 3 M intervals a month for 1,000 points.
# Interval has no __post_init__, so nothing is skipped. tests/meterdata/test_engine.py
# checks that _new_interval and Interval(...) give equal objects.
_I_SET = tuple(Interval.__dict__[f.name].__set__ for f in fields(Interval))  # in field order
_new_object = object.__new__


def _new_interval(
    start_ms: int,
    end_ms: int,
    wh: int | None,
    quality: Quality,
    rule: str | None,
    start_trace: tuple[Origin, ...],
    end_trace: tuple[Origin, ...],
) -> Interval:
    s0, s1, s2, s3, s4, s5, s6 = _I_SET
    obj: Interval = _new_object(Interval)
    s0(obj, start_ms)
    s1(obj, end_ms)
    s2(obj, wh)
    s3(obj, quality)
    s4(obj, rule)
    s5(obj, start_trace)
    s6(obj, end_trace)
    return obj


def _new_intervals(
    count: int,
    start_ms: Iterable[int],
    end_ms: Iterable[int],
    wh: Iterable[int | None],
    quality: Iterable[Quality],
    rule: Iterable[str | None],
    start_trace: Iterable[tuple[Origin, ...]],
    end_trace: Iterable[tuple[Origin, ...]],
) -> list[Interval]:
    """``count`` intervals from columns: ``Interval(*row) for row in zip(...)`` in bulk.

    Each field is set for all objects in one C-level ``map`` over its slot descriptor,
    as :func:`_new_interval` does one object at a time, so no Python frame runs per
    interval. Every column must yield at least ``count`` values.
    """
    objs: list[Interval] = list(map(_new_object, repeat(Interval, count)))
    cols = (start_ms, end_ms, wh, quality, rule, start_trace, end_trace)
    for put, col in zip(_I_SET, cols, strict=True):
        deque(map(put, objs, col), 0)
    return objs


# boundary kinds
_READ, _LINEAR, _ESTIMATED, _NONE = 0, 1, 2, 3
_HOW = ("read", "linear", "estimated", "none")


def default_tolerance_ms(interval_ms: int) -> int:
    """+-1 % of the interval (PTB-A 50.8): 9 s for 15 minutes, 36 s for an hour."""
    return interval_ms // 100


def _check_grid(
    start_ms: int, end_ms: int, interval_ms: int, tolerance_ms: int, max_linear_gap_ms: int
) -> None:
    if interval_ms <= 0:
        raise MeterDataInputError("interval_ms", interval_ms, "must be positive")
    if start_ms % interval_ms or end_ms % interval_ms:
        raise MeterDataInputError(
            "start_ms/end_ms",
            (start_ms, end_ms),
            f"must lie on the UTC grid of {interval_ms} ms (a multiple of the interval)",
        )
    if end_ms < start_ms:
        raise MeterDataInputError("end_ms", end_ms, f"must not be before start_ms {start_ms}")
    if not 0 <= 2 * tolerance_ms < interval_ms:
        raise MeterDataInputError(
            "tolerance_ms", tolerance_ms, "must be at least 0 and less than half the interval"
        )
    if max_linear_gap_ms < 0:
        raise MeterDataInputError("max_linear_gap_ms", max_linear_gap_ms, "must not be negative")


def compute_intervals(
    samples: Sequence[RegisterSample] | RegisterColumns,
    *,
    start_ms: int,
    end_ms: int,
    interval_ms: int,
    tolerance_ms: int | None = None,
    max_linear_gap_ms: int = DEFAULT_MAX_LINEAR_GAP_MS,
    rated_max_w: int | None = None,
    register_modulus: int | None = None,
    power_samples: Sequence[PowerSample] = (),
    register_resolution_wh: int = 1,
    with_boundaries: bool = False,
    tz: ZoneInfo | None = None,
) -> IntervalSeries:
    """Validate ``samples`` and compute the intervals of ``[start_ms, end_ms)``.

    ``samples`` (objects or :class:`RegisterColumns`) may come in any order and should
    extend beyond the range: the last reading before it and the first after it anchor
    its edges, and readings up to :data:`PROFILE_LOOKBACK_MS` before a long gap give its
    comparable days, which are calendar days in ``tz`` (UTC days when None; pass the
    zone of the metering point so that a comparable day across a daylight-saving
    change keeps its local time of day). With ``with_boundaries`` the result also
    lists the register value at every boundary (:class:`Boundary`).
    ``tolerance_ms`` defaults to :func:`default_tolerance_ms`. The result is a function
    of the arguments alone (no clock, no randomness): equal inputs, equal output.

    Raises :class:`MeterDataInputError` when the range is not on the UTC grid of
    ``interval_ms``, the tolerance is not below half an interval, or a parameter is
    out of range (see :func:`replica.meterdata.vee.screen`).
    """
    tol = default_tolerance_ms(interval_ms) if tolerance_ms is None else tolerance_ms
    _check_grid(start_ms, end_ms, interval_ms, tol, max_linear_gap_ms)
    with collector_paused():  # thousands of acyclic objects: see gcpause.py
        sc = screen(
            samples,
            rated_max_w=rated_max_w,
            register_modulus=register_modulus,
            power_samples=power_samples,
            register_resolution_wh=register_resolution_wh,
        )
        b = _boundaries(sc, start_ms, end_ms, interval_ms, tol, max_linear_gap_ms, tz)
        intervals = _intervals(b, start_ms, interval_ms)
        bounds = _boundary_objects(b, start_ms, interval_ms) if with_boundaries else ()
    lo, hi = start_ms - tol, end_ms + tol
    findings = tuple(
        f
        for f in sc.findings
        if f.ts_ms >= lo and (f.since_ms if f.since_ms is not None else f.ts_ms) <= hi
    )
    return IntervalSeries(start_ms, end_ms, interval_ms, intervals, findings, bounds)


def intervals_from_screened(
    sc: Screened,
    *,
    start_ms: int,
    end_ms: int,
    interval_ms: int,
    tolerance_ms: int,
    max_linear_gap_ms: int = DEFAULT_MAX_LINEAR_GAP_MS,
    tz: ZoneInfo | None = None,
) -> tuple[Interval, ...]:
    """The intervals of ``[start_ms, end_ms)`` from already screened readings.

    Raises :class:`MeterDataInputError` as :func:`compute_intervals` does.
    """
    b = _screened_lists(sc, start_ms, end_ms, interval_ms, tolerance_ms, max_linear_gap_ms, tz)
    return _intervals(b, start_ms, interval_ms)


def boundaries_from_screened(
    sc: Screened,
    *,
    start_ms: int,
    end_ms: int,
    interval_ms: int,
    tolerance_ms: int,
    max_linear_gap_ms: int = DEFAULT_MAX_LINEAR_GAP_MS,
    tz: ZoneInfo | None = None,
) -> tuple[Boundary, ...]:
    """The register value at every boundary of ``[start_ms, end_ms]`` (I2-I4).

    Raises :class:`MeterDataInputError` as :func:`compute_intervals` does.
    """
    b = _screened_lists(sc, start_ms, end_ms, interval_ms, tolerance_ms, max_linear_gap_ms, tz)
    return _boundary_objects(b, start_ms, interval_ms)


def _screened_lists(
    sc: Screened,
    start_ms: int,
    end_ms: int,
    interval_ms: int,
    tolerance_ms: int,
    max_linear_gap_ms: int,
    tz: ZoneInfo | None,
) -> _Lists:
    """Check the grid, then the boundary lists of already screened readings.

    Serves both :func:`intervals_from_screened` and :func:`boundaries_from_screened`.
    Raises :class:`MeterDataInputError` as :func:`compute_intervals` does.
    """
    _check_grid(start_ms, end_ms, interval_ms, tolerance_ms, max_linear_gap_ms)
    return _boundaries(sc, start_ms, end_ms, interval_ms, tolerance_ms, max_linear_gap_ms, tz)


def _boundary_objects(b: _Lists, start_ms: int, step: int) -> tuple[Boundary, ...]:
    vals, segs, kinds, rules, traces = b
    return tuple(
        Boundary(
            start_ms + k * step,
            None if kinds[k] == _NONE else vals[k],
            _HOW[kinds[k]],
            None if kinds[k] == _NONE else segs[k],
            rules[k],
            traces[k],
        )
        for k in range(len(vals))
    )


_Lists = tuple[list[int], list[int], list[int], list[str | None], list[tuple[Origin, ...]]]


def _boundaries(
    sc: Screened,
    start_ms: int,
    end_ms: int,
    step: int,
    tol: int,
    max_linear_gap_ms: int,
    tz: ZoneInfo | None = None,
) -> _Lists:
    """Register value, series, kind, rule and trace of every boundary (I2-I4).

    The column-wise fast path when every tolerance window holds at most one reading (the
    common case: readings on a regular cadence), else the general loop. Both give the
    same lists; tests/meterdata/test_fastpath.py checks it on random readings.
    """
    got = _boundaries_fast(sc, start_ms, end_ms, step, tol, max_linear_gap_ms, tz)
    if got is not None:
        return got
    return _boundaries_general(sc, start_ms, end_ms, step, tol, max_linear_gap_ms, tz)


def _boundaries_fast(
    sc: Screened,
    start_ms: int,
    end_ms: int,
    step: int,
    tol: int,
    max_linear_gap_ms: int,
    tz: ZoneInfo | None = None,
) -> _Lists | None:
    """:func:`_boundaries_general`'s result computed column by column, or None.

    None when some tolerance window holds more than one reading (the closest must then
    be chosen one by one). Otherwise the reading at or after each window's start is
    found for all boundaries in one C-level pass (``map(bisect_left, ...)``); a
    boundary is read exactly when that reading lies inside its window (I2), and only
    the boundaries that are not read go through the per-boundary rules of I3/I4.
    """
    ts, wh, seg, src = sc.ts, sc.wh, sc.seg, sc.src
    n = len(ts)
    if not n:
        return None  # no reading at all: nothing to gain
    nb = (end_ms - start_ms) // step + 1
    stop = start_ms + nb * step
    lows = range(start_ms - tol, stop - tol, step)
    highs = range(start_ms + tol, stop + tol, step)
    ps = list(map(bisect_left, repeat(ts), lows))
    far = highs[-1] + 1  # beyond every window: stands for "no reading"
    tsx = [*ts, far, far]
    if any(map(le, map(tsx.__getitem__, map(add, ps, repeat(1))), highs)):
        return None  # a window with two or more readings: the general loop chooses
    read = list(map(le, map(tsx.__getitem__, ps), highs))
    # every boundary first as if read by reading ps[k] (clamped to a real reading);
    # the few that are not read are then redone by the rules of I3/I4
    at = ps if ps[-1] < n else list(map(min, ps, repeat(n - 1)))
    cols = sc.cols
    traces: list[tuple[Origin, ...]] = list(
        zip(new_origins(cols.gateway, cols.height, cols.index, list(map(src.__getitem__, at))))
    )
    vals = list(map(wh.__getitem__, at))
    segs = list(map(seg.__getitem__, at))
    kinds = [_READ] * nb
    rules: list[str | None] = [None] * nb
    if read.count(False):
        fill = _Unread(sc, vals, segs, kinds, rules, traces, step, tol, max_linear_gap_ms, tz)
        for k in compress(range(nb), map(not_, read)):
            vals[k], segs[k], kinds[k], traces[k] = 0, -1, _NONE, ()
            fill(k, start_ms + k * step, ps[k])
    return vals, segs, kinds, rules, traces


class _Unread:
    """I3/I4 for one boundary with no reading in its window (shared by both paths).

    Writes the boundary's value, series, kind, rule and trace into the lists given;
    boundaries in one gap share one trace tuple and one estimate.
    """

    __slots__ = ("sc", "vals", "segs", "kinds", "rules", "traces", "step", "tol", "gap",
                 "tz", "estimates", "pair_a", "pair")

    def __init__(
        self,
        sc: Screened,
        vals: list[int],
        segs: list[int],
        kinds: list[int],
        rules: list[str | None],
        traces: list[tuple[Origin, ...]],
        step: int,
        tol: int,
        max_linear_gap_ms: int,
        tz: ZoneInfo | None,
    ) -> None:
        self.sc, self.vals, self.segs, self.kinds = sc, vals, segs, kinds
        self.rules, self.traces = rules, traces
        self.step, self.tol, self.gap, self.tz = step, tol, max_linear_gap_ms, tz
        self.estimates: dict[int, tuple[dict[int, int] | None, str]] = {}
        self.pair_a = -1
        self.pair: tuple[Origin, ...] = ()

    def __call__(self, k: int, t: int, p: int) -> None:
        """Boundary ``k`` at ``t``; ``p`` is the first reading after its window."""
        sc = self.sc
        ts, wh, seg = sc.ts, sc.wh, sc.seg
        if p == 0:
            self.rules[k] = RULE_NO_EARLIER_READING
            return
        if p == len(ts):
            self.rules[k] = RULE_NO_LATER_READING
            return
        a = p - 1
        if seg[a] != seg[p]:
            self.rules[k] = RULE_METER_EXCHANGE
            return
        ta, tb = ts[a], ts[p]
        if a != self.pair_a:  # boundaries in one gap share one trace
            self.pair_a = a
            self.pair = (sc.origin(a), sc.origin(p))
        self.traces[k] = self.pair
        self.segs[k] = seg[a]
        if tb - ta <= self.gap:
            self.vals[k] = wh[a] + (wh[p] - wh[a]) * (t - ta) // (tb - ta)
            self.kinds[k] = _LINEAR
            self.rules[k] = RULE_LINEAR
            return
        est = self.estimates.get(a)
        if est is None:
            est = estimate_gap(sc, a, self.step, self.tol, self.gap, self.tz)
            self.estimates[a] = est
        shape, self.rules[k] = est
        if shape is None:  # no comparable day: the line of I3
            self.vals[k] = wh[a] + (wh[p] - wh[a]) * (t - ta) // (tb - ta)
        else:
            self.vals[k] = shape[t]
        self.kinds[k] = _ESTIMATED


def _boundaries_general(
    sc: Screened,
    start_ms: int,
    end_ms: int,
    step: int,
    tol: int,
    max_linear_gap_ms: int,
    tz: ZoneInfo | None = None,
) -> _Lists:
    """Register value, series, kind, rule and trace of every boundary (I2-I4).

    The general loop: one pass over the grid with a moving position in the readings,
    choosing the closest reading where a window holds several; names are bound
    locally on purpose.
    """
    ts, wh, seg, src = sc.ts, sc.wh, sc.seg, sc.src
    gws, hts, ixs = sc.cols.gateway, sc.cols.height, sc.cols.index
    n = len(ts)
    nb = (end_ms - start_ms) // step + 1

    vals: list[int] = [0] * nb
    segs: list[int] = [-1] * nb
    kinds: list[int] = [_NONE] * nb
    rules: list[str | None] = [None] * nb
    traces: list[tuple[Origin, ...]] = [()] * nb
    fill = _Unread(sc, vals, segs, kinds, rules, traces, step, tol, max_linear_gap_ms, tz)

    p = 0
    t = start_ms
    for k in range(nb):
        # p: first reading at or after the start of this boundary's tolerance window
        p = bisect_left(ts, t - tol, p)
        if p < n and ts[p] <= t + tol:
            c = p
            q = p + 1
            if q < n and ts[q] <= t + tol:  # more than one reading in the window
                best = abs(ts[p] - t)
                while q < n and ts[q] <= t + tol:
                    d = abs(ts[q] - t)
                    if d < best:
                        best, c = d, q
                    q += 1
            vals[k] = wh[c]
            segs[k] = seg[c]
            kinds[k] = _READ
            i = src[c]
            traces[k] = (new_origin(gws[i], hts[i], ixs[i]),)
        else:
            fill(k, t, p)
        t += step
    return vals, segs, kinds, rules, traces


def _intervals(b: _Lists, start_ms: int, step: int) -> tuple[Interval, ...]:
    """Each interval from its two boundaries (I5), column by column.

    Every interval is first built as measured (C-level ``map`` over the columns); the
    few whose boundaries are not both read in one series are then rebuilt one by one
    by :func:`_interval_at`. Equal to :func:`_intervals_general`
    (tests/meterdata/test_fastpath.py).
    """
    vals, segs, kinds, rules, traces = b
    m = len(vals) - 1
    if m <= 0:
        return ()
    out = _new_intervals(
        m,
        range(start_ms, start_ms + m * step, step),
        range(start_ms + step, start_ms + (m + 1) * step, step),
        map(sub, vals[1:], vals),
        repeat(Quality.MEASURED),
        repeat(None),
        traces,
        traces[1:],
    )
    redo = set(compress(range(m), map(ne, segs, segs[1:])))
    if kinds.count(_READ) != m + 1:
        for k in compress(range(m + 1), map(ne, kinds, repeat(_READ))):
            redo.add(k - 1)
            redo.add(k)
        redo.discard(-1)
        redo.discard(m)
    for k in redo:
        out[k] = _interval_at(b, k, start_ms + k * step, step)
    return tuple(out)


def _interval_at(b: _Lists, k: int, t: int, step: int) -> Interval:
    """Interval ``k`` (from ``t``) from boundaries ``k`` and ``k + 1`` (I5)."""
    vals, segs, kinds, rules, traces = b
    ka, kb, sa, sb = kinds[k], kinds[k + 1], segs[k], segs[k + 1]
    ta, tb, u = traces[k], traces[k + 1], t + step
    if ka == _READ and kb == _READ and sa == sb:
        return _new_interval(t, u, vals[k + 1] - vals[k], Quality.MEASURED, None, ta, tb)
    if ka == _NONE or kb == _NONE:
        rule = rules[k] if ka == _NONE else rules[k + 1]
        return _new_interval(t, u, None, Quality.MISSING, rule, ta, tb)
    if sa != sb:
        return _new_interval(t, u, None, Quality.MISSING, RULE_METER_EXCHANGE, ta, tb)
    wh = vals[k + 1] - vals[k]
    if ka == _ESTIMATED or kb == _ESTIMATED:
        rule = rules[k] if ka == _ESTIMATED else rules[k + 1]
        return _new_interval(t, u, wh, Quality.ESTIMATED, rule, ta, tb)
    return _new_interval(t, u, wh, Quality.SUBSTITUTED, RULE_LINEAR, ta, tb)


def _intervals_general(b: _Lists, start_ms: int, step: int) -> tuple[Interval, ...]:
    """Each interval from its two boundaries (I5), one by one: the reference for
    :func:`_intervals`; names bound locally on purpose."""
    vals, segs, kinds, rules, traces = b
    measured, substituted = Quality.MEASURED, Quality.SUBSTITUTED
    estimated, missing = Quality.ESTIMATED, Quality.MISSING
    read, none_, est = _READ, _NONE, _ESTIMATED
    new = _new_interval
    out: list[Interval] = []
    append = out.append
    t = start_ms
    for k, (ka, kb, va, vb, sa, sb, ta, tb) in enumerate(
        zip(kinds, kinds[1:], vals, vals[1:], segs, segs[1:], traces, traces[1:], strict=False)
    ):
        u = t + step
        if ka == read and kb == read and sa == sb:
            append(new(t, u, vb - va, measured, None, ta, tb))
        elif ka == none_ or kb == none_:
            append(new(t, u, None, missing, rules[k] if ka == none_ else rules[k + 1], ta, tb))
        elif sa != sb:
            append(new(t, u, None, missing, RULE_METER_EXCHANGE, ta, tb))
        elif ka == est or kb == est:
            append(
                Interval(t, u, vb - va, estimated, rules[k] if ka == est else rules[k + 1], ta, tb)
            )
        else:
            append(new(t, u, vb - va, substituted, RULE_LINEAR, ta, tb))
        t = u
    return tuple(out)


__all__ = [
    "Boundary",
    "DEFAULT_MAX_LINEAR_GAP_MS",
    "Interval",
    "IntervalSeries",
    "MS_PER_HOUR",
    "MS_PER_MINUTE",
    "NEAREST_DAY_SHIFTS_MS",
    "PROFILE_LOOKBACK_MS",
    "Quality",
    "RULES",
    "RULES_VERSION",
    "RULE_COMPARABLE_DAYS",
    "RULE_LINEAR",
    "RULE_LINEAR_NO_PROFILE",
    "RULE_METER_EXCHANGE",
    "RULE_NO_EARLIER_READING",
    "RULE_NO_LATER_READING",
    "SAME_WEEKDAY_SHIFTS_MS",
    "boundaries_from_screened",
    "compute_intervals",
    "default_tolerance_ms",
    "intervals_from_screened",
    "largest_remainder",
]
