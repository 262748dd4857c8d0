"""Local days and months, and the parsers the CLI and HTTP API use (docs/intervals.md C)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replica.meterdata.calendar import (
    day_range,
    days,
    local_date,
    month_range,
    months,
    parse_date,
    parse_instant,
    parse_interval,
    parse_range,
    zone,
)
from replica.meterdata.errors import MeterDataInputError

VIENNA = zone("Europe/Vienna")
H = 3_600_000


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


@pytest.mark.parametrize(
    "day, hours",
    [("2026-03-29", 23), ("2026-10-25", 25), ("2026-11-30", 24), ("2026-03-28", 24)],
)
def test_vienna_days(day, hours):
    s, e = day_range(date.fromisoformat(day), VIENNA)
    assert e - s == hours * H
    assert (e - s) // (15 * 60_000) == hours * 4
    assert local_date(s, VIENNA) == date.fromisoformat(day)
    assert local_date(e - 1, VIENNA) == date.fromisoformat(day)


def test_a_skipped_midnight_starts_the_day_at_the_jump():
    # America/Santiago moved clocks from 00:00 to 01:00 on 2024-09-08
    santiago = zone("America/Santiago")
    s, e = day_range(date(2024, 9, 8), santiago)
    assert datetime.fromtimestamp(s / 1000, UTC).astimezone(santiago).hour == 1
    assert e - s == 23 * H


def test_month_and_period_lists():
    s, e = month_range(2026, 10, VIENNA)
    assert (s, e) == (ms("2026-09-30T22:00:00+00:00"), ms("2026-10-31T23:00:00+00:00"))
    assert (e - s) // (15 * 60_000) == 31 * 96 + 4
    ds = days(s, e, VIENNA)
    assert (
        len(ds) == 31 and ds[24].label == "2026-10-25" and ds[24].end_ms - ds[24].start_ms == 25 * H
    )
    assert [p.label for p in months(s - 1, e + 1, VIENNA)] == ["2026-09", "2026-10", "2026-11"]
    assert months(s, s, VIENNA) == [] and days(e, s, VIENNA) == []
    with pytest.raises(MeterDataInputError, match="1..12"):
        month_range(2026, 13, VIENNA)


@pytest.mark.parametrize(
    "text, want",
    [
        ("2026-11-30", "2026-11-29T23:00:00+00:00"),
        ("2026-11-30T06:00+01:00", "2026-11-30T05:00:00+00:00"),
        ("2026-11-30T05:00Z", "2026-11-30T05:00:00+00:00"),
        ("2026-11-30T06:00", "2026-11-30T05:00:00+00:00"),
        ("2026-11-30 06:00:30.250", "2026-11-30T05:00:30.250+00:00"),
        ("2026-07-01T06:00", "2026-07-01T04:00:00+00:00"),
        ("2026-11-30T06:00-0530", "2026-11-30T11:30:00+00:00"),
        (" 1796014800000 ", "2026-11-30T05:00:00+00:00"),
    ],
)
def test_instants(text, want):
    assert parse_instant(text, VIENNA) == ms(want)


@pytest.mark.parametrize(
    "text, says",
    [
        ("yesterday", "expected a date"),
        ("30.11.2026", "expected a date"),
        ("2026-02-30", "not a calendar date"),
        ("2026-11-30T25:00", "not a valid date and time"),
        ("2026-11-30T06:00+24:00", "offset must be"),
        ("2026-03-29T02:30", "does not exist in Europe/Vienna"),
        ("2026-10-25T02:30", "occurs twice in Europe/Vienna"),
        ("-5", "must be from 1970 on"),
        ("1969-12-31T23:59Z", "must be from 1970 on"),
        ("9999-12-31T23:59-23:59", "outside the years"),
        ("0001-01-01T00:00+01:00", "outside the years"),
        ("99999999999999999999", "expected a date"),
        ("", "expected a date"),
    ],
)
def test_bad_instants_say_what_to_type(text, says):
    with pytest.raises(MeterDataInputError, match=says) as e:
        parse_instant(text, VIENNA, field="from")
    assert isinstance(e.value, ValueError)
    assert str(e.value).startswith("from: ") and repr(text) in str(e.value)


def test_ambiguous_local_time_is_accepted_with_an_offset():
    a = parse_instant("2026-10-25T02:30+02:00", VIENNA)
    b = parse_instant("2026-10-25T02:30+01:00", VIENNA)
    assert b - a == H


def test_ranges():
    assert parse_range("2026-11-30", "2026-11-30", VIENNA) == day_range(date(2026, 11, 30), VIENNA)
    assert parse_range("2026-11-30T06:00+01:00", "2026-11-30T07:00+01:00", VIENNA) == (
        ms("2026-11-30T05:00:00+00:00"),
        ms("2026-11-30T06:00:00+00:00"),
    )
    with pytest.raises(MeterDataInputError, match="must be after from"):
        parse_range("2026-11-30", "2026-11-29", VIENNA)
    with pytest.raises(MeterDataInputError, match="^to: expected"):
        parse_range("2026-11-30", "tomorrow", VIENNA)


def test_intervals_and_zones():
    assert [parse_interval(t) for t in ("15m", "30m", "1h", "60m", "15min", "PT15M", "1H")] == [
        900_000,
        1_800_000,
        3_600_000,
        3_600_000,
        900_000,
        900_000,
        3_600_000,
    ]
    for bad in ("7m", "15", "", "1d"):
        with pytest.raises(MeterDataInputError, match="one of 15m, 30m, 1h"):
            parse_interval(bad)
    for bad in ("Mars/Base", "", "../etc/passwd", "/etc/localtime"):
        with pytest.raises(MeterDataInputError, match="IANA time zone"):
            zone(bad)
    with pytest.raises(MeterDataInputError, match="YYYY-MM-DD"):
        parse_date("2026-1-3")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40),
        st.from_regex(
            r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?",
            fullmatch=True,
        ),
    )
)
def test_any_text_is_an_instant_or_a_clear_error(text):
    try:
        v = parse_instant(text, VIENNA)
    except MeterDataInputError as e:
        assert e.field == "time" and e.message
    else:
        assert isinstance(v, int) and 0 <= v < 2**63


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)),
    st.sampled_from(
        ["Europe/Vienna", "Europe/London", "America/New_York", "Australia/Sydney", "UTC"]
    ),
)
def test_days_tile_time_and_round_trip(dt, tzname):
    tz = zone(tzname)
    d = dt.date()
    s, e = day_range(d, tz)
    assert e - s in (23 * H, 24 * H, 25 * H)
    assert day_range(d + timedelta(days=1), tz)[0] == e
    assert local_date(s, tz) == d and local_date(e - 1, tz) == d
    stamp = datetime.fromtimestamp(s / 1000, UTC).astimezone(tz).isoformat()
    assert parse_instant(stamp, tz) == s
