"""Long gaps: comparable-day shapes and the largest-remainder split (docs/intervals.md I4).

Pure and in integers. Works on the accepted readings of
:func:`replica.meterdata.vee.screen`; the comparable days' energy is weighed in
micro-Wh, floored, so the split depends on nothing but the readings.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from replica.meterdata.errors import MeterDataInputError
from replica.meterdata.vee import Screened

MS_PER_DAY = 86_400_000
#: Comparable days' energy is weighed in micro-Wh (I4 step 2).
MICRO = 1_000_000

RULE_COMPARABLE_DAYS = "comparable-days"
RULE_LINEAR_NO_PROFILE = "linear-no-profile"

#: Comparable days for a long gap: the same weekday one to four weeks earlier; when none
#: of those is usable, the nearest usable earlier day (docs/intervals.md I4).
SAME_WEEKDAY_DAYS = (7, 14, 21, 28)
NEAREST_DAYS = (1, 2, 3, 4, 5, 6)
SAME_WEEKDAY_SHIFTS_MS = tuple(d * MS_PER_DAY for d in SAME_WEEKDAY_DAYS)
NEAREST_DAY_SHIFTS_MS = tuple(d * MS_PER_DAY for d in NEAREST_DAYS)
#: How far before a gap the engine may look for comparable days: 28 days, one hour more
#: when they span a daylight-saving change, and the 2-hour linear limit before that for
#: the reading that anchors the comparable window. A caller that wants the same
#: estimates for a day as for its month passes every reading from this long before the
#: last reading at or before ``start_ms`` (with a longer linear limit, that much more).
PROFILE_LOOKBACK_MS = SAME_WEEKDAY_SHIFTS_MS[-1] + 3 * 3_600_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def days_before(t: int, days: int, tz: ZoneInfo | None) -> int:
    """The instant at the same local wall-clock time ``days`` calendar days before ``t``.

    In ``tz`` (a wall time that a daylight-saving change skips or repeats resolves as
    Python's ``fold=0`` does: the offset before the change); without a zone, exactly
    ``days`` x 24 hours earlier.
    """
    if tz is None:
        return t - days * MS_PER_DAY
    local = (_EPOCH + timedelta(milliseconds=t)).astimezone(tz)
    wall = local.replace(tzinfo=None) - timedelta(days=days)
    d = wall.replace(tzinfo=tz, fold=0) - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1000 + d.microseconds // 1000


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` (>= 0) into integers proportional to ``weights`` (>= 0, sum > 0).

    Each share is first ``floor(total * w / sum)``; the units left over go one each to
    the largest remainders, ties to the earlier position. The shares sum to ``total``.
    Raises :class:`MeterDataInputError` for a negative total or weight or a zero sum.
    """
    if total < 0:
        raise MeterDataInputError("total", total, "must not be negative")
    if any(w < 0 for w in weights):
        raise MeterDataInputError("weights", list(weights), "must not be negative")
    wsum = sum(weights)
    if wsum <= 0:
        raise MeterDataInputError("weights", list(weights), "must have a positive sum")
    shares = [total * w // wsum for w in weights]
    left = total - sum(shares)
    if left:
        order = sorted(range(len(weights)), key=lambda k: (-(total * weights[k] % wsum), k))
        for k in order[:left]:
            shares[k] += 1
    return shares


def _register_uwh(sc: Screened, t: int) -> int:
    """The register at ``t`` in micro-Wh: linear between readings, floored (I4 step 2)."""
    ts, wh = sc.ts, sc.wh
    j = bisect_right(ts, t) - 1
    if ts[j] == t:
        return wh[j] * MICRO
    return wh[j] * MICRO + (wh[j + 1] - wh[j]) * MICRO * (t - ts[j]) // (ts[j + 1] - ts[j])


def _usable(sc: Screened, lo: int, hi: int, max_linear_gap_ms: int) -> bool:
    """Whether ``[lo, hi]`` is covered by one series with no gap above the linear limit."""
    ts, seg = sc.ts, sc.seg
    i0 = bisect_right(ts, lo) - 1
    i1 = bisect_left(ts, hi)
    if i0 < 0 or i1 >= len(ts) or seg[i0] != seg[i1]:
        return False
    return all(ts[j + 1] - ts[j] <= max_linear_gap_ms for j in range(i0, i1))


def estimate_gap(
    sc: Screened,
    a: int,
    step: int,
    tol: int,
    max_linear_gap_ms: int,
    tz: ZoneInfo | None = None,
) -> tuple[dict[int, int] | None, str]:
    """Register values at the grid boundaries inside the long gap after reading ``a``.

    Comparable days are calendar days in ``tz`` (UTC days when None). Returns
    ``({boundary_ms: value}, "comparable-days")`` when comparable days give the gap a
    shape, else ``(None, "linear-no-profile")``: the caller then interpolates linearly
    (I3). docs/intervals.md I4.
    """
    ta, tb = sc.ts[a], sc.ts[a + 1]
    wa, wb = sc.wh[a], sc.wh[a + 1]

    def usable(d: int) -> bool:
        return _usable(sc, days_before(ta, d, tz), days_before(tb, d, tz), max_linear_gap_ms)

    shifts = [d for d in SAME_WEEKDAY_DAYS if usable(d)]
    if not shifts:
        shifts = [d for d in NEAREST_DAYS if usable(d)][:1]
    if not shifts:
        return None, RULE_LINEAR_NO_PROFILE
    first = (ta + tol) // step * step + step  # first grid point after ta's window
    last = (tb - tol - 1) // step * step  # last grid point before tb's window
    inner = range(first, last + 1, step)
    points = [ta, *inner, tb]
    weights = [0] * (len(points) - 1)
    for d in shifts:
        prev = _register_uwh(sc, days_before(points[0], d, tz))
        for k in range(1, len(points)):
            cur = _register_uwh(sc, days_before(points[k], d, tz))
            weights[k - 1] += cur - prev
            prev = cur
    if sum(weights) <= 0:
        return None, RULE_LINEAR_NO_PROFILE
    shares = largest_remainder(wb - wa, weights)
    values: dict[int, int] = {}
    v = wa
    for k, t in enumerate(inner):
        v += shares[k]
        values[t] = v
    return values, RULE_COMPARABLE_DAYS
