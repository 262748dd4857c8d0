"""The engine's fast paths give exactly what its general paths give (random readings).

The column-wise boundaries and intervals (replica/meterdata/intervals.py), the
validation shortcut (vee.py) and the bulk constructors are only shortcuts: on readings
with gaps of every length, rollovers, counter resets, clock flags, readings close
together and out of order, each must equal the one-by-one reference.
"""

from __future__ import annotations

import random
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replica.meterdata import Origin, Quality, RegisterColumns, compute_intervals, screen, vee
from replica.meterdata import intervals as engine
from replica.meterdata.intervals import (
    DEFAULT_MAX_LINEAR_GAP_MS,
    Interval,
    _boundaries_fast,
    _boundaries_general,
    _intervals,
    _intervals_general,
    _new_intervals,
    default_tolerance_ms,
)
from replica.meterdata.vee import (
    FLAG_CLOCK_STEP,
    FLAG_CLOCK_UNSYNCED,
    FLAG_COUNTER_RESET,
    new_origin,
    new_origins,
)

MIN = 60_000
HOUR = 60 * MIN
BASE = 1_795_996_800_000  # 2026-12-01T00:00Z, on every grid
GW = "5e1f" * 16

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODULUS = 100_000


@st.composite
def register_rows(draw):
    """Rows ``(ts, wh, gateway, height, index, flags)`` on a jittered cadence.

    Mostly regular (the fast path's case), with gaps short and long, readings close
    together (two in one tolerance window), rollovers at ``MODULUS``, resets, clock
    flags, sometimes a second gateway or a shuffled order.
    """
    interval = draw(st.sampled_from([15 * MIN, 30 * MIN, HOUR]))
    cadence = draw(st.sampled_from([MIN, 5 * MIN, 15 * MIN, HOUR]))
    n = draw(st.integers(0, 120))
    rnd = random.Random(draw(st.integers(0, 2**32)))
    jitter = draw(st.sampled_from([0, 4_000, 20_000]))
    odd = draw(st.sampled_from([0.0, 0.02, 0.1]))  # share of unusual readings
    tol = default_tolerance_ms(interval)
    edges = draw(st.sampled_from([(), (-tol - 1, -tol, 0, tol, tol + 1)]))
    t = BASE + draw(st.integers(-HOUR, HOUR))
    wh = draw(st.integers(0, MODULUS - 1))
    rows = []
    for k in range(n):
        t += cadence
        if rnd.random() < odd:
            t += rnd.choice([10 * MIN, 40 * MIN, 2 * HOUR, 5 * HOUR, 30 * HOUR])
        wh += rnd.randint(0, 400)
        flags = 0
        if rnd.random() < odd:
            flags = rnd.choice([FLAG_CLOCK_UNSYNCED, FLAG_CLOCK_STEP, FLAG_COUNTER_RESET])
        raw = wh % MODULUS
        if flags == FLAG_COUNTER_RESET:
            wh = raw = rnd.randint(0, 50)  # a meter exchange
        ts = t + rnd.randint(-jitter, jitter)
        if edges:  # on a grid boundary, or just inside or outside its tolerance window
            ts = t // interval * interval + rnd.choice(edges)
        rows.append((ts, raw, GW, k // 4, k % 4, flags))
        if rnd.random() < odd:  # a second reading a few seconds later (same window)
            rows.append((ts + rnd.randint(1, 5_000), raw + 1, GW, k // 4, 10 + k % 4, 0))
    if rows and rnd.random() < odd:
        i = rnd.randrange(len(rows))
        rows[i] = (rows[i][0], rows[i][1], "aa" * 32, *rows[i][3:])  # another gateway
    if rnd.random() < odd:
        rnd.shuffle(rows)
    return interval, rows


def _span(data, interval: int, rows) -> tuple[int, int]:
    lo = min((r[0] for r in rows), default=BASE) - 3 * HOUR
    hi = max((r[0] for r in rows), default=BASE) + 3 * HOUR
    a = data.draw(st.integers(lo // interval, hi // interval))
    b = data.draw(st.integers(a, hi // interval + 1))
    return a * interval, b * interval


@SETTINGS
@given(st.data(), register_rows())
def test_fast_boundaries_and_intervals_equal_the_general_loop(data, gen):
    interval, rows = gen
    start, end = _span(data, interval, rows)
    tol = data.draw(st.sampled_from([default_tolerance_ms(interval), 0, interval // 2 - 1]))
    sc = screen(RegisterColumns.from_rows(rows), register_modulus=MODULUS)
    args = (sc, start, end, interval, tol, DEFAULT_MAX_LINEAR_GAP_MS, None)
    general = _boundaries_general(*args)
    fast = _boundaries_fast(*args)
    if fast is not None:
        assert fast == general
    assert engine._boundaries(*args) == general
    assert _intervals(general, start, interval) == _intervals_general(general, start, interval)


@SETTINGS
@given(st.data(), register_rows())
def test_the_validation_shortcut_equals_the_general_validation(data, gen):
    interval, rows = gen
    start, end = _span(data, interval, rows)
    kw = {
        "start_ms": start,
        "end_ms": end,
        "interval_ms": interval,
        "with_boundaries": True,
        "register_modulus": data.draw(st.sampled_from([None, MODULUS])),
        "rated_max_w": data.draw(st.sampled_from([None, 5_000, 10**7])),
    }
    cols = RegisterColumns.from_rows(rows)
    fast = compute_intervals(cols, **kw)
    with mock.patch.object(vee, "_shortcut", return_value=None):
        general = compute_intervals(cols, **kw)
    with mock.patch.object(engine, "_boundaries_fast", return_value=None), mock.patch.object(
        engine, "_intervals", engine._intervals_general
    ):
        loop = compute_intervals(cols, **kw)
    assert fast == general == loop


def test_regular_readings_take_the_fast_path_and_close_ones_do_not():
    rows = [(BASE + k * 5 * MIN + k % 3 * 1000, 1000 + 7 * k, GW, k, 0, 0) for k in range(60)]
    sc = screen(RegisterColumns.from_rows(rows))
    args = (sc, BASE, BASE + 4 * HOUR, 15 * MIN, 9_000, DEFAULT_MAX_LINEAR_GAP_MS, None)
    got = _boundaries_fast(*args)
    assert got is not None and got == _boundaries_general(*args)
    rows.insert(4, (BASE + 15 * MIN + 5_000, 1021, GW, 3, 1, 0))  # two readings near 00:15
    sc = screen(RegisterColumns.from_rows(rows))
    args = (sc, *args[1:])
    assert _boundaries_fast(*args) is None
    r = compute_intervals(RegisterColumns.from_rows(rows), start_ms=BASE,
                          end_ms=BASE + HOUR, interval_ms=15 * MIN)
    assert r.intervals[0].end_trace == (Origin(GW, 3, 0),)  # the closer one
    assert all(i.quality is Quality.MEASURED for i in r.intervals)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=4), st.integers(), st.integers()), max_size=20),
       st.data())
def test_bulk_constructors_build_equal_objects(cols, data):
    at = data.draw(st.lists(st.integers(0, max(len(cols) - 1, 0)), max_size=10)) if cols else []
    gws, hts, ixs = ([c[i] for c in cols] for i in range(3))
    assert new_origins(gws, hts, ixs, at) == [new_origin(gws[i], hts[i], ixs[i]) for i in at]
    assert new_origins(gws, hts, ixs, at) == [Origin(gws[i], hts[i], ixs[i]) for i in at]
    rows = [
        (k, k + 1, k * 3 if k % 2 else None, Quality.MEASURED, None,
         (Origin(g, h, i),), ())
        for k, (g, h, i) in enumerate(cols)
    ]
    built = _new_intervals(len(rows), *(list(c) for c in zip(*rows, strict=True))) if rows else []
    assert built == [Interval(*r) for r in rows]
    assert [repr(b) for b in built] == [repr(Interval(*r)) for r in rows]
