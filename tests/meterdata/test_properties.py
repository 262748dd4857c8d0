"""Properties of the interval engine over random readings (docs/intervals.md I2-I6)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from replica.meterdata import (
    Origin,
    Quality,
    RegisterSample,
    compute_intervals,
    default_tolerance_ms,
    largest_remainder,
)

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
BASE = 1_795_996_800_000  # 2026-12-01T00:00Z, on every grid
GW = "5e1f"

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def readings(draw, *, modulus: int | None = None):
    """Increasing timestamps with short, medium and long gaps; a non-decreasing register."""
    interval = draw(st.sampled_from([15 * MIN, 30 * MIN, HOUR]))
    n = draw(st.integers(0, 40))
    t = BASE + draw(st.integers(-HOUR, HOUR))
    wh = draw(st.integers(0, 10**6))
    out = []
    for i in range(n):
        gap = draw(
            st.one_of(
                st.integers(1, 20_000),  # near the last one (within a tolerance window)
                st.integers(1, interval),
                st.integers(interval, 2 * HOUR + 60_000),  # around the linear limit
                st.integers(2 * HOUR, 12 * HOUR),
            )
        )
        t += gap
        wh += draw(st.integers(0, 5_000))
        raw = wh % modulus if modulus else wh
        flagged = draw(st.integers(0, 9)) == 0
        out.append(RegisterSample(t, raw, Origin(GW, i, 0), clock_ok=not flagged))
    return interval, out


@st.composite
def repeated_days(draw):
    """A day's profile repeated for a few days, with one long gap cut out of the last day."""
    interval = draw(st.sampled_from([15 * MIN, 30 * MIN, HOUR]))
    cadence = draw(st.sampled_from([15 * MIN, 30 * MIN, HOUR]))
    per_day = DAY // cadence
    profile = draw(st.lists(st.integers(0, 300), min_size=per_day, max_size=per_day))
    ndays = draw(st.integers(2, 9))
    gap_from = draw(st.integers(0, per_day - 1))
    gap_len = draw(st.integers(2 * HOUR // cadence + 1, per_day))
    wh = draw(st.integers(0, 10**6))
    rnd = random.Random(draw(st.integers(0, 2**32)))  # jitter and day-to-day variation
    out = []
    h = 0
    for d in range(ndays):
        for k in range(per_day):
            wh += profile[k] * rnd.choice((1, 1, 2))
            if d == ndays - 1 and gap_from < k < gap_from + gap_len:
                continue
            ts = BASE + d * DAY + k * cadence + rnd.randint(-3000, 3000)
            out.append(RegisterSample(ts, wh, Origin(GW, h, 0)))
            h += 1
    return interval, out


def span_for(data, interval: int, samples: list[RegisterSample]) -> tuple[int, int]:
    lo = min((s.ts_ms for s in samples), default=BASE) - 3 * HOUR
    hi = max((s.ts_ms for s in samples), default=BASE) + 3 * HOUR
    a = data.draw(st.integers(lo // interval, hi // interval))
    b = data.draw(st.integers(a, hi // interval + 1))
    return a * interval, b * interval


def check_conservation(series) -> None:
    b = series.boundaries
    iv = series.intervals
    assert len(b) == len(iv) + 1
    for k, i in enumerate(iv):
        assert (i.start_ms, i.end_ms) == (b[k].at_ms, b[k + 1].at_ms)
        if i.quality is Quality.MISSING:
            assert i.wh is None
            continue
        assert i.wh is not None and i.wh >= 0
        assert b[k].series == b[k + 1].series
        assert i.wh == b[k + 1].wh - b[k].wh
    # every run without a missing interval sums to the difference of its end boundaries
    k = 0
    while k < len(iv):
        total = 0
        j = k
        while j < len(iv) and iv[j].wh is not None:
            total += iv[j].wh
            assert total == b[j + 1].wh - b[k].wh
            j += 1
        k = j + 1


@SETTINGS
@given(st.data(), readings())
def test_intervals_of_any_span_sum_to_the_register_difference(data, gen):
    interval, samples = gen
    start, end = span_for(data, interval, samples)
    r = compute_intervals(
        samples, start_ms=start, end_ms=end, interval_ms=interval, with_boundaries=True
    )
    check_conservation(r)
    # between two boundaries read by readings, the sum is the difference of those readings
    by_origin = {s.origin: s for s in samples}
    read = [b for b in r.boundaries if b.how == "read"]
    for x, y in zip(read, read[1:], strict=False):
        if x.series != y.series:
            continue
        span = [i for i in r.intervals if x.at_ms <= i.start_ms < y.at_ms]
        if any(i.wh is None for i in span):
            continue
        assert sum(i.wh for i in span) == by_origin[y.trace[0]].wh - by_origin[x.trace[0]].wh


@SETTINGS
@given(st.data(), repeated_days())
def test_long_gaps_from_comparable_days_keep_the_register_difference(data, gen):
    interval, samples = gen
    lo = samples[0].ts_ms // interval * interval + interval
    hi = samples[-1].ts_ms // interval * interval
    assume(hi > lo)
    r = compute_intervals(
        samples, start_ms=lo, end_ms=hi, interval_ms=interval, with_boundaries=True
    )
    check_conservation(r)
    # no reading after the end is missing, so nothing inside is missing
    assert all(i.quality is not Quality.MISSING for i in r.intervals)
    by_origin = {s.origin: s for s in samples}
    first = next(b for b in r.boundaries if b.how == "read")
    last = next(b for b in reversed(r.boundaries) if b.how == "read")
    span = [i.wh for i in r.intervals if first.at_ms <= i.start_ms < last.at_ms]
    assert sum(span) == by_origin[last.trace[0]].wh - by_origin[first.trace[0]].wh


@SETTINGS
@given(st.data(), readings(modulus=10**6))
def test_rollovers_are_unwrapped_and_conserve(data, gen):
    interval, samples = gen
    start, end = span_for(data, interval, samples)
    r = compute_intervals(
        samples,
        start_ms=start,
        end_ms=end,
        interval_ms=interval,
        register_modulus=10**6,
        with_boundaries=True,
    )
    check_conservation(r)
    # steps are at most 5,000 Wh, far below M / 2: every decrease is a rollover
    assert all(f.effect != "split" for f in r.findings)


@SETTINGS
@given(st.data(), readings())
def test_never_measured_without_a_trusted_reading_within_tolerance_at_both_ends(data, gen):
    interval, samples = gen
    start, end = span_for(data, interval, samples)
    tol = data.draw(st.sampled_from([None, 0, default_tolerance_ms(interval) * 3]))
    r = compute_intervals(
        samples, start_ms=start, end_ms=end, interval_ms=interval, tolerance_ms=tol
    )
    tol = default_tolerance_ms(interval) if tol is None else tol
    trusted = {s.origin: s for s in samples if s.clock_ok}
    for i in r.intervals:
        if i.quality is not Quality.MEASURED:
            assert i.rule is not None
            continue
        assert i.rule is None and len(i.start_trace) == len(i.end_trace) == 1
        for at, (o,) in ((i.start_ms, i.start_trace), (i.end_ms, i.end_trace)):
            assert o in trusted and abs(trusted[o].ts_ms - at) <= tol
    # and conversely: a boundary with a trusted reading within tolerance is read
    for i in r.intervals:
        near = [s for s in trusted.values() if abs(s.ts_ms - i.start_ms) <= tol]
        far = [s for s in trusted.values() if abs(s.ts_ms - i.end_ms) <= tol]
        if near and far:
            assert i.quality is Quality.MEASURED


@SETTINGS
@given(st.data(), readings())
def test_deterministic_whatever_the_input_order(data, gen):
    """Also: the validation shortcut (readings in ledger order) equals the general path."""
    interval, samples = gen
    start, end = span_for(data, interval, samples)
    kw = {
        "start_ms": start,
        "end_ms": end,
        "interval_ms": interval,
        "with_boundaries": True,
        "rated_max_w": data.draw(st.sampled_from([None, 1_000, 10**6])),
    }
    a = compute_intervals(samples, **kw)
    assert compute_intervals(list(samples), **kw) == a
    shuffled = list(samples)
    random.Random(data.draw(st.integers(0, 2**32))).shuffle(shuffled)
    assert compute_intervals(shuffled, **kw) == a


@SETTINGS
@given(st.data(), st.one_of(readings(), repeated_days()))
def test_a_sub_range_gives_the_same_intervals(data, gen):
    """A day's values equal the same day's within its month (given the same readings)."""
    interval, samples = gen
    start, end = span_for(data, interval, samples)
    whole = compute_intervals(samples, start_ms=start, end_ms=end, interval_ms=interval)
    n = len(whole.intervals)
    a = data.draw(st.integers(0, n))
    b = data.draw(st.integers(a, n))
    part = compute_intervals(
        samples, start_ms=start + a * interval, end_ms=start + b * interval, interval_ms=interval
    )
    assert part.intervals == whole.intervals[a:b]
    assert set(part.findings) <= set(whole.findings)


@SETTINGS
@given(readings())
def test_excluded_readings_are_named_in_findings(gen):
    interval, samples = gen
    flagged = [s for s in samples if not s.clock_ok]
    lo = BASE - 10 * DAY
    r = compute_intervals(
        samples, start_ms=lo // HOUR * HOUR, end_ms=BASE + 40 * DAY, interval_ms=HOUR
    )
    named = {f.origins[0] for f in r.findings if f.kind == "clock-unsynchronised"}
    assert named == {s.origin for s in flagged}
    traced = {o for i in r.intervals for o in (*i.start_trace, *i.end_trace)}
    assert not traced & named


@SETTINGS
@given(readings())
def test_power_findings_do_not_change_values(gen):
    interval, samples = gen
    kw = {"start_ms": BASE - DAY, "end_ms": BASE + 10 * DAY, "interval_ms": interval}
    plain = compute_intervals(samples, **kw)
    rated = compute_intervals(samples, rated_max_w=1_000, **kw)
    assert rated.intervals == plain.intervals
    assert {f.kind for f in rated.findings} <= {"power-above-rated", "clock-unsynchronised"}


@SETTINGS
@given(
    st.integers(0, 10**9),
    st.lists(st.integers(0, 10**12), min_size=1, max_size=60).filter(lambda w: sum(w) > 0),
)
def test_largest_remainder_conserves_and_stays_within_one_unit(total, weights):
    shares = largest_remainder(total, weights)
    assert sum(shares) == total
    wsum = sum(weights)
    for s, w in zip(shares, weights, strict=True):
        low = total * w // wsum
        assert low <= s <= low + 1
        if w == 0:
            assert s == 0
    # a larger remainder never gets less than a smaller one (ties: the earlier first)
    rem = [total * w % wsum for w in weights]
    up = [s - total * w // wsum for s, w in zip(shares, weights, strict=True)]
    for i in range(len(weights)):
        for j in range(len(weights)):
            if up[j] and not up[i]:
                assert (rem[j], -j) > (rem[i], -i)


@SETTINGS
@given(st.integers(0, 4_000_000_000_000), st.integers(1, 28))
def test_days_before_keeps_the_local_time_of_day(t, d):
    from datetime import UTC, datetime, timedelta

    from replica.meterdata.calendar import zone
    from replica.meterdata.estimate import days_before

    assert days_before(t, d, None) == t - d * DAY
    tz = zone("Europe/Vienna")
    u = days_before(t, d, tz)
    assert abs(u - (t - d * DAY)) <= HOUR
    here = datetime.fromtimestamp(t / 1000, UTC).astimezone(tz)
    there = datetime.fromtimestamp(u / 1000, UTC).astimezone(tz)
    assert there.date() == (here.replace(tzinfo=None) - timedelta(days=d)).date()
    if (there.hour, there.minute) != (here.hour, here.minute):
        # only where that wall time does not exist d days earlier (clocks went forward)
        assert there.utcoffset() != here.utcoffset()
