"""The interval engine on small hand-made cases (docs/intervals.md I1-I6, V1-V6)."""

from __future__ import annotations

import pytest

from replica.meterdata import (
    Origin,
    PowerSample,
    Quality,
    RegisterColumns,
    RegisterSample,
    aggregate,
    compute_intervals,
    largest_remainder,
)
from replica.meterdata.errors import MeterDataInputError

MIN = 60_000
Q = 15 * MIN


def o(i: int, gw: str = "aa") -> Origin:
    return Origin(gw, i, 0)


def regular(minutes: list[int], wh_per_min: int = 2, base: int = 1000, late_ms: int = 3000):
    return [
        RegisterSample(m * MIN + late_ms, base + m * wh_per_min, o(i))
        for i, m in enumerate(minutes)
    ]


def run(samples, end_min: int, **kw):
    return compute_intervals(samples, start_ms=0, end_ms=end_min * MIN, interval_ms=Q, **kw)


def test_readings_within_tolerance_give_measured_intervals():
    r = run(regular(list(range(0, 61, 15))), 60)
    assert [i.wh for i in r.intervals] == [30, 30, 30, 30]
    assert {i.quality for i in r.intervals} == {Quality.MEASURED}
    assert all(i.rule is None for i in r.intervals)
    assert r.intervals[1].start_trace == (o(1),) and r.intervals[1].end_trace == (o(2),)
    assert r.findings == ()


def test_reading_just_outside_tolerance_is_interpolated():
    s = regular([0, 15, 30, 45, 60], late_ms=0)
    s[2] = RegisterSample(30 * MIN + 9_001, s[2].wh, s[2].origin)
    r = run(s, 60)
    assert [i.quality for i in r.intervals] == [
        Quality.MEASURED,
        Quality.SUBSTITUTED,
        Quality.SUBSTITUTED,
        Quality.MEASURED,
    ]
    assert r.intervals[1].end_trace == (o(1), o(2))
    # at 9 s the same reading is taken as it is
    s[2] = RegisterSample(30 * MIN + 9_000, s[2].wh, s[2].origin)
    assert {i.quality for i in run(s, 60).intervals} == {Quality.MEASURED}


def test_closest_reading_wins_and_ties_go_to_the_earlier():
    s = [
        RegisterSample(0, 100, o(0)),
        RegisterSample(15 * MIN - 4000, 200, o(1)),
        RegisterSample(15 * MIN + 4000, 210, o(2)),
        RegisterSample(30 * MIN + 1000, 300, o(3)),
    ]
    r = run(s, 30)
    assert r.intervals[0].wh == 100 and r.intervals[0].end_trace == (o(1),)


def test_after_the_last_reading_intervals_are_missing():
    r = run(regular([0, 15, 30]), 60)
    assert [i.quality for i in r.intervals] == [
        Quality.MEASURED,
        Quality.MEASURED,
        Quality.MISSING,
        Quality.MISSING,
    ]
    assert [i.rule for i in r.intervals[2:]] == ["no-later-reading"] * 2
    assert r.intervals[2].wh is None


def test_before_the_first_reading_intervals_are_missing():
    r = run(regular([30, 45, 60]), 60)
    assert [i.rule for i in r.intervals] == ["no-earlier-reading"] * 2 + [None, None]


def test_rollover_at_modulus_is_unwrapped_and_recorded():
    s = [
        RegisterSample(0, 99_990, o(0)),
        RegisterSample(15 * MIN, 99_998, o(1)),
        RegisterSample(30 * MIN, 6, o(2)),
        RegisterSample(45 * MIN, 14, o(3)),
    ]
    r = run(s, 45, register_modulus=100_000)
    assert [i.wh for i in r.intervals] == [8, 8, 8]
    assert [f.kind for f in r.findings] == ["register-decrease"]
    assert r.findings[0].effect == "unwrapped" and r.findings[0].origins == (o(1), o(2))


def test_decrease_without_modulus_splits_the_series():
    s = [
        RegisterSample(0, 5000, o(0)),
        RegisterSample(15 * MIN, 5008, o(1)),
        RegisterSample(22 * MIN, 5010, o(2)),
        RegisterSample(37 * MIN, 3, o(3)),  # a new meter
        RegisterSample(45 * MIN, 7, o(4)),
        RegisterSample(60 * MIN, 15, o(5)),
    ]
    r = run(s, 60)
    assert [(i.wh, i.quality, i.rule) for i in r.intervals] == [
        (8, Quality.MEASURED, None),
        (None, Quality.MISSING, "meter-exchange"),
        (None, Quality.MISSING, "meter-exchange"),
        (8, Quality.MEASURED, None),
    ]
    (f,) = r.findings
    assert f.kind == "register-decrease" and f.effect == "split"


def test_counter_reset_flag_rules_out_a_rollover():
    s = [
        RegisterSample(0, 99_990, o(0)),
        RegisterSample(15 * MIN, 6, o(1), counter_reset=True),
        RegisterSample(30 * MIN, 14, o(2)),
    ]
    r = run(s, 30, register_modulus=100_000)
    assert r.intervals[0].quality is Quality.MISSING and r.findings[0].effect == "split"


def test_power_above_rated_is_recorded_and_changes_nothing():
    s = regular([0, 15, 30], wh_per_min=100)  # 6 kW
    quiet = run(s, 30)
    loud = run(s, 30, rated_max_w=5_000)
    assert loud.intervals == quiet.intervals
    assert [f.kind for f in loud.findings] == ["power-above-rated"] * 2
    assert run(s, 30, rated_max_w=6_000).findings == ()


def test_frozen_register_while_power_flows():
    s = [RegisterSample(m * MIN, 500, o(i)) for i, m in enumerate([0, 15, 30, 45])]
    p = [PowerSample(m * MIN + 1, 800, o(100 + i)) for i, m in enumerate([5, 20, 35])]
    r = run(s, 45, power_samples=p)
    (f,) = r.findings
    assert f.kind == "frozen-register" and (f.since_ms, f.ts_ms) == (0, 45 * MIN)
    assert [i.wh for i in r.intervals] == [0, 0, 0]
    p0 = [PowerSample(m * MIN + 1, 0, o(100 + i)) for i, m in enumerate([5, 20, 35])]
    assert run(s, 45, power_samples=p0).findings == ()


def test_flagged_clocks_and_backward_time_are_excluded_and_recorded():
    s = regular([0, 15, 30, 45, 60])
    s[1] = RegisterSample(s[1].ts_ms, s[1].wh, s[1].origin, clock_ok=False)
    s[3] = RegisterSample(s[3].ts_ms, s[3].wh, s[3].origin, clock_step=True)
    back = RegisterSample(10 * MIN, 2000, o(5))  # after o(4) in the ledger, earlier in time
    r = run([*s, back], 60)
    assert [f.kind for f in r.findings] == [
        "time-backwards",
        "clock-unsynchronised",
        "clock-step",
    ]
    assert all(f.effect == "excluded" for f in r.findings)
    assert [i.quality for i in r.intervals] == [Quality.SUBSTITUTED] * 4
    assert sum(i.wh or 0 for i in r.intervals) == 120


def test_conflicting_readings_at_one_instant_are_excluded():
    s = regular([0, 15, 30])
    s.append(RegisterSample(s[1].ts_ms, s[1].wh + 5, o(0, "bb")))
    r = run(s, 30)
    assert [f.kind for f in r.findings] == ["conflicting-readings"]
    assert [i.quality for i in r.intervals] == [Quality.SUBSTITUTED] * 2


def test_input_order_does_not_matter():
    s = regular(list(range(0, 300, 5)))
    del s[10:40]
    a = run(s, 240)
    b = run(list(reversed(s)), 240)
    assert a == b


@pytest.mark.parametrize(
    "kw",
    [
        {"start_ms": 1, "end_ms": Q, "interval_ms": Q},
        {"start_ms": Q, "end_ms": 0, "interval_ms": Q},
        {"start_ms": 0, "end_ms": Q, "interval_ms": 0},
        {"start_ms": 0, "end_ms": Q, "interval_ms": Q, "tolerance_ms": Q // 2},
        {"start_ms": 0, "end_ms": Q, "interval_ms": Q, "register_modulus": 0},
    ],
)
def test_bad_parameters_are_refused_with_the_field_named(kw):
    with pytest.raises(MeterDataInputError) as e:
        compute_intervals([], **kw)
    assert isinstance(e.value, ValueError) and e.value.field in str(e.value)


def test_same_origin_twice_with_different_values_is_refused():
    s = [RegisterSample(0, 1, o(0)), RegisterSample(0, 2, o(0))]
    with pytest.raises(MeterDataInputError, match="same origin"):
        run(s, 15)
    assert run([s[0], s[0]], 15) == run([s[0]], 15)


def test_largest_remainder_ties_go_to_the_earlier():
    assert largest_remainder(10, [1, 1, 1]) == [4, 3, 3]
    assert largest_remainder(7, [0, 2, 3, 5]) == [0, 1, 2, 4]  # 1.4, 2.1, 3.5
    assert largest_remainder(0, [1, 2]) == [0, 0]
    with pytest.raises(MeterDataInputError):
        largest_remainder(1, [0, 0])


def test_flag_bits_are_the_ledgers_quality_bits():
    from ledger.readings import Quality as LedgerQuality
    from replica.meterdata.vee import FLAG_CLOCK_STEP, FLAG_CLOCK_UNSYNCED, FLAG_COUNTER_RESET

    assert FLAG_CLOCK_UNSYNCED == LedgerQuality.GATEWAY_CLOCK_UNSYNCED
    assert FLAG_CLOCK_STEP == LedgerQuality.CLOCK_STEP
    assert FLAG_COUNTER_RESET == LedgerQuality.COUNTER_RESET


def test_columns_and_samples_give_the_same_result():
    s = regular(list(range(0, 61, 5)))
    s[3] = RegisterSample(s[3].ts_ms, s[3].wh, s[3].origin, clock_step=True)
    cols = RegisterColumns.from_samples(s)
    assert cols.flags is not None and cols.flags[3] == 0x0002
    rows = [(s_.ts_ms, s_.wh, "aa", i, 0, cols.flags[i]) for i, s_ in enumerate(s)]
    assert run(cols, 60) == run(s, 60) == run(RegisterColumns.from_rows(rows), 60)
    with pytest.raises(MeterDataInputError, match="same length"):
        run(RegisterColumns([1, 2], [1], ["a"], [1], [1]), 15)
    assert RegisterColumns.from_rows(rows).ts_ms == tuple(x.ts_ms for x in s)
    with pytest.raises(MeterDataInputError, match="six fields|each row"):
        RegisterColumns.from_rows([*rows[:2], rows[2][:5]])


def test_rollover_plausibility_follows_the_rating():
    s = [
        RegisterSample(0, 99_000, o(0)),
        RegisterSample(15 * MIN, 1_000, o(1)),  # unwrapped step 2,000 Wh in 15 min: 8 kW
        RegisterSample(30 * MIN, 1_500, o(2)),
    ]
    r = run(s, 30, register_modulus=100_000, rated_max_w=10_000)
    assert r.findings[0].effect == "unwrapped" and [i.wh for i in r.intervals] == [2_000, 500]
    r = run(s, 30, register_modulus=100_000, rated_max_w=5_000)
    assert r.findings[0].effect == "split" and r.intervals[0].quality is Quality.MISSING
    # without a rating: at most half the modulus
    s[1] = RegisterSample(15 * MIN, 49_001, o(1))  # step 50,001 > 50,000
    s[2] = RegisterSample(30 * MIN, 49_500, o(2))
    assert run(s, 30, register_modulus=100_000).findings[0].effect == "split"
    s[1] = RegisterSample(15 * MIN, 49_000, o(1))  # step 50,000
    assert run(s, 30, register_modulus=100_000).findings[0].effect == "unwrapped"


def test_a_gap_longer_than_the_linear_limit_without_history_is_linear_no_profile():
    s = regular([0, 15, 180, 195])
    r = run(s, 195)
    rules = [i.rule for i in r.intervals]
    assert rules[0] is None and rules[-1] is None
    assert set(rules[1:-1]) == {"linear-no-profile"}
    assert {i.quality for i in r.intervals[1:-1]} == {Quality.ESTIMATED}
    assert sum(i.wh or 0 for i in r.intervals) == s[-1].wh - s[0].wh
    # exactly at the limit it is still linear
    assert {i.rule for i in run(regular([0, 15, 135, 150]), 150).intervals[1:-1]} == {"linear"}


def test_findings_outside_the_range_are_left_out():
    s = regular(list(range(0, 24 * 60, 15)))
    s[4] = RegisterSample(s[4].ts_ms, s[4].wh, s[4].origin, clock_ok=False)  # 01:00
    assert [f.kind for f in run(s, 120).findings] == ["clock-unsynchronised"]
    r = compute_intervals(s, start_ms=3 * 60 * MIN, end_ms=4 * 60 * MIN, interval_ms=Q)
    assert r.findings == ()


def test_frozen_runs_are_one_finding_each():
    s = [
        RegisterSample(m * MIN, wh, o(i))
        for i, (m, wh) in enumerate([(0, 5), (15, 5), (30, 5), (45, 9), (60, 9), (75, 9)])
    ]
    p = [PowerSample(m * MIN, 400, o(100 + m)) for m in range(0, 76, 5)]
    r = run(s, 75, power_samples=p)
    assert [(f.kind, f.since_ms, f.ts_ms) for f in r.findings] == [
        ("frozen-register", 0, 30 * MIN),
        ("frozen-register", 45 * MIN, 75 * MIN),
    ]
    # 400 W for 15 min is 100 Wh: a register of 100 Wh resolution may well stand still
    assert run(s, 75, power_samples=p, register_resolution_wh=100).findings == ()
    # a zero power reading at 00:20 clears the pair 00:15-00:30 only
    p0 = [PowerSample(20 * MIN, 0, o(999)), *p]
    assert [(f.since_ms, f.ts_ms) for f in run(s, 75, power_samples=p0).findings] == [
        (0, 15 * MIN),
        (45 * MIN, 75 * MIN),
    ]


def test_totals_per_period():
    s = regular(list(range(0, 46, 15)))
    r = run(s, 90)  # intervals after 45 are missing
    a, b, c = aggregate(
        r.intervals,
        [("first", 0, 45 * MIN), ("rest", 45 * MIN, 90 * MIN), ("none", 90 * MIN, 90 * MIN)],
    )
    assert (a.wh, a.known_wh, a.quality, a.intervals) == (90, 90, Quality.MEASURED, 3)
    assert (b.wh, b.known_wh, b.quality, b.counts["missing"]) == (None, 0, Quality.MISSING, 3)
    assert (c.wh, c.intervals, c.quality) == (None, 0, Quality.MISSING)
    with pytest.raises(MeterDataInputError, match="grid"):
        aggregate(r.intervals, [("odd", 5 * MIN, 45 * MIN)])


def test_the_fast_interval_constructor_builds_equal_objects():
    from replica.meterdata.intervals import Interval, _new_interval

    args = (0, Q, 7, Quality.SUBSTITUTED, "linear", (o(1),), (o(2), o(3)))
    fast, slow = _new_interval(*args), Interval(*args)
    assert fast == slow and hash(fast.start_trace) == hash(slow.start_trace)
    assert repr(fast) == repr(slow)
    with pytest.raises(AttributeError):
        fast.wh = 8  # type: ignore[misc]


def test_the_fast_origin_constructor_builds_equal_objects():
    from replica.meterdata.vee import new_origin

    assert new_origin("aa", 3, 4) == Origin("aa", 3, 4)
    assert hash(new_origin("aa", 3, 4)) == hash(Origin("aa", 3, 4))
    assert new_origin("aa", 3, 4) < Origin("aa", 3, 5)


def test_screened_entry_points_agree_with_compute_intervals():
    from replica.meterdata import screen
    from replica.meterdata.intervals import boundaries_from_screened, intervals_from_screened

    s = regular([0, 15, 30, 100, 400, 415])
    kw = {"start_ms": 0, "end_ms": 420 * MIN, "interval_ms": Q}
    whole = compute_intervals(s, with_boundaries=True, **kw)
    sc = screen(s)
    assert intervals_from_screened(sc, tolerance_ms=9000, **kw) == whole.intervals
    assert boundaries_from_screened(sc, tolerance_ms=9000, **kw) == whole.boundaries
    assert {i.quality for i in whole.intervals} == set(Quality)


def test_comparable_days_keep_local_time_across_a_dst_change():
    """Monday 2026-03-30, the day after clocks go forward in Vienna: the comparable day a
    week earlier had its peak at 08:00-09:00 local time, 07:00 UTC then, 06:00 UTC now."""
    from replica.meterdata.calendar import zone

    H = 60 * MIN
    before = 1_774_224_000_000  # 2026-03-23T00:00Z, a Monday, CET (UTC+1)
    gap_day = before + 7 * 24 * H  # 2026-03-30T00:00Z, CEST (UTC+2)
    s, wh = [], 0
    for h in range(25):
        s.append(RegisterSample(before + h * H, wh, o(h)))
        wh += 1000 if h == 7 else 10  # 07:00-08:00 UTC = 08:00-09:00 local
    s += [
        RegisterSample(gap_day + 3 * H, 50_000, o(100)),
        RegisterSample(gap_day + 4 * H, 50_010, o(101)),  # 06:00 local
        RegisterSample(gap_day + 10 * H, 51_060, o(102)),  # 12:00 local
    ]
    kw = {"start_ms": gap_day + 4 * H, "end_ms": gap_day + 10 * H, "interval_ms": H}
    local = compute_intervals(s, tz=zone("Europe/Vienna"), **kw).intervals
    utc = compute_intervals(s, **kw).intervals
    assert {i.rule for i in local} == {i.rule for i in utc} == {"comparable-days"}
    assert [i.wh for i in local] == [10, 10, 1000, 10, 10, 10]  # peak 08:00 local
    assert [i.wh for i in utc] == [10, 10, 10, 1000, 10, 10]  # an hour late
