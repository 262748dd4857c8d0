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
from collections.abc import Sequence
from dataclasses import dataclass, fields
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
from replica.meterdata.vee import (
    Finding,
    Origin,
    PowerSample,
    RegisterColumns,
    RegisterSample,
    Screened,
    new_origin,
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
    _check_grid(start_ms, end_ms, interval_ms, tolerance_ms, max_linear_gap_ms)
    b = _boundaries(sc, start_ms, end_ms, interval_ms, tolerance_ms, max_linear_gap_ms, tz)
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
    _check_grid(start_ms, end_ms, interval_ms, tolerance_ms, max_linear_gap_ms)
    b = _boundaries(sc, start_ms, end_ms, interval_ms, tolerance_ms, max_linear_gap_ms, tz)
    return _boundary_objects(b, start_ms, interval_ms)


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

    The hot loop of the engine: one pass over the grid with a moving position in the
    readings; names are bound locally on purpose.
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
    estimates: dict[int, tuple[dict[int, int] | None, str]] = {}
    pair_a = -1
    pair: tuple[Origin, ...] = ()

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
        elif p == 0:
            rules[k] = RULE_NO_EARLIER_READING
        elif p == n:
            rules[k] = RULE_NO_LATER_READING
        else:
            a = p - 1
            if seg[a] != seg[p]:
                rules[k] = RULE_METER_EXCHANGE
            else:
                ta, tb = ts[a], ts[p]
                if a != pair_a:  # boundaries in one gap share one trace
                    pair_a = a
                    pair = (sc.origin(a), sc.origin(p))
                traces[k] = pair
                segs[k] = seg[a]
                if tb - ta <= max_linear_gap_ms:
                    vals[k] = wh[a] + (wh[p] - wh[a]) * (t - ta) // (tb - ta)
                    kinds[k] = _LINEAR
                    rules[k] = RULE_LINEAR
                else:
                    est = estimates.get(a)
                    if est is None:
                        est = estimate_gap(sc, a, step, tol, max_linear_gap_ms, tz)
                        estimates[a] = est
                    shape, rules[k] = est
                    if shape is None:  # no comparable day: the line of I3
                        vals[k] = wh[a] + (wh[p] - wh[a]) * (t - ta) // (tb - ta)
                    else:
                        vals[k] = shape[t]
                    kinds[k] = _ESTIMATED
        t += step
    return vals, segs, kinds, rules, traces


def _intervals(b: _Lists, start_ms: int, step: int) -> tuple[Interval, ...]:
    """Each interval from its two boundaries (I5); names bound locally on purpose."""
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
