"""Local days and months as UTC ranges, and the dates, times and lengths users type.

Pure: no clock is read (there is no "today" here; a caller that wants one passes it).
Intervals are always on a UTC grid; a local day is the UTC range from its local
midnight to the next, so a day has 92, 96 or 100 quarter-hours in a zone with daylight
saving time (23, 24 or 25 hours). docs/intervals.md section C is normative.

Every parser raises :class:`MeterDataInputError` (a ``ValueError``) whose message names
the field, repeats the value and shows a form that would be accepted.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from replica.meterdata.errors import MeterDataInputError

MS_PER_MINUTE = 60_000
#: The time zone used in examples and as the CLI's default.
DEFAULT_TZ = "Europe/Vienna"
#: Interval lengths the CLI and HTTP API accept (the issue's 15, 30 and 60 minutes).
INTERVAL_CHOICES_MS = {
    "15m": 15 * MS_PER_MINUTE,
    "30m": 30 * MS_PER_MINUTE,
    "60m": 60 * MS_PER_MINUTE,
    "1h": 60 * MS_PER_MINUTE,
}
_INTERVAL_ALIASES = {
    "15min": "15m",
    "30min": "30m",
    "60min": "60m",
    "PT15M": "15m",
    "PT30M": "30m",
    "PT60M": "60m",
    "PT1H": "1h",
}

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_RE = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)"
    r"(?P<offset>Z|[+-]\d{2}:?\d{2})?"
)
_MS_RE = re.compile(r"-?\d{1,19}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def zone(name: str, *, field: str = "tz") -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Vienna``, ``UTC``).

    Raises :class:`MeterDataInputError` when the name is not a known zone.
    """
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise MeterDataInputError(
            field, name, "not a known IANA time zone; use a name such as Europe/Vienna or UTC"
        ) from e


def _ms(dt: datetime) -> int:
    d = dt - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1000 + d.microseconds // 1000


def _local_midnight_ms(day: date, tz: ZoneInfo) -> int:
    """The first instant of ``day`` in ``tz`` (a skipped midnight starts at the jump)."""
    return _ms(datetime(day.year, day.month, day.day, tzinfo=tz))


def day_range(day: date, tz: ZoneInfo) -> tuple[int, int]:
    """UTC ``[start_ms, end_ms)`` of the local calendar day ``day`` in ``tz``."""
    return _local_midnight_ms(day, tz), _local_midnight_ms(day + timedelta(days=1), tz)


def month_range(year: int, month: int, tz: ZoneInfo) -> tuple[int, int]:
    """UTC ``[start_ms, end_ms)`` of a local calendar month in ``tz``.

    Raises :class:`MeterDataInputError` for a month outside 1..12.
    """
    if not 1 <= month <= 12:
        raise MeterDataInputError("month", month, "must be 1..12")
    nxt = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return _local_midnight_ms(date(year, month, 1), tz), _local_midnight_ms(nxt, tz)


class Period(NamedTuple):
    """One local day or month: its label (``2026-03-29``, ``2026-03``) and UTC range."""

    label: str
    start_ms: int
    end_ms: int


def local_date(ms: int, tz: ZoneInfo) -> date:
    """The local calendar date in ``tz`` of the instant ``ms``."""
    return (_EPOCH + timedelta(milliseconds=ms)).astimezone(tz).date()


def days(start_ms: int, end_ms: int, tz: ZoneInfo) -> list[Period]:
    """The local days that overlap ``[start_ms, end_ms)``, each clipped to it."""
    out: list[Period] = []
    if end_ms <= start_ms:
        return out
    d = local_date(start_ms, tz)
    while True:
        s, e = day_range(d, tz)
        if s >= end_ms:
            return out
        out.append(Period(d.isoformat(), max(s, start_ms), min(e, end_ms)))
        d += timedelta(days=1)


def months(start_ms: int, end_ms: int, tz: ZoneInfo) -> list[Period]:
    """The local months that overlap ``[start_ms, end_ms)``, each clipped to it."""
    out: list[Period] = []
    if end_ms <= start_ms:
        return out
    d = local_date(start_ms, tz)
    y, m = d.year, d.month
    while True:
        s, e = month_range(y, m, tz)
        if s >= end_ms:
            return out
        out.append(Period(f"{y:04d}-{m:02d}", max(s, start_ms), min(e, end_ms)))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)


def parse_date(text: str, *, field: str = "date") -> date:
    """``2026-11-30`` as a date. Raises :class:`MeterDataInputError` otherwise."""
    t = text.strip()
    if not _DATE_RE.fullmatch(t):
        raise MeterDataInputError(field, text, "expected a date as YYYY-MM-DD, e.g. 2026-11-30")
    try:
        return date.fromisoformat(t)
    except ValueError as e:
        raise MeterDataInputError(field, text, f"not a calendar date ({e})") from e


def parse_instant(text: str, tz: ZoneInfo, *, field: str = "time") -> int:
    """An instant as UTC milliseconds, from what a user may type.

    Accepted: milliseconds since 1970 (``1764460800000``); a date (``2026-11-30``: its
    local midnight in ``tz``); a date and time with an offset (``2026-11-30T06:00+01:00``,
    ``2026-11-30T05:00Z``); a date and time without one, read as local time in ``tz``.
    A local time that does not exist in ``tz`` (skipped by a DST change) or exists twice
    (repeated by one) is refused with a message asking for an explicit offset.

    Raises :class:`MeterDataInputError` for anything else.
    """
    try:
        ms = _parse_instant(text, tz, field)
    except OverflowError as e:
        raise MeterDataInputError(field, text, "outside the years 1970 .. 9999") from e
    if not 0 <= ms < 2**63:
        raise MeterDataInputError(field, text, "must be from 1970 on (milliseconds 0 .. 2^63-1)")
    return ms


def _parse_instant(text: str, tz: ZoneInfo, field: str) -> int:
    t = text.strip()
    if _MS_RE.fullmatch(t):
        return int(t)
    if _DATE_RE.fullmatch(t):
        return _local_midnight_ms(parse_date(t, field=field), tz)
    m = _DATETIME_RE.fullmatch(t)
    if not m:
        raise MeterDataInputError(
            field,
            text,
            "expected a date (2026-11-30), a date and time with offset "
            "(2026-11-30T06:00+01:00 or 2026-11-30T05:00Z) or milliseconds since 1970",
        )
    try:
        naive = datetime.fromisoformat(f"{m['date']}T{m['time']}")
    except ValueError as e:
        raise MeterDataInputError(field, text, f"not a valid date and time ({e})") from e
    off = m["offset"]
    if off is not None:
        if off == "Z":
            return _ms(naive.replace(tzinfo=UTC))
        sign = 1 if off[0] == "+" else -1
        hh, mm = int(off[1:3]), int(off[-2:])
        if hh > 23 or mm > 59:
            raise MeterDataInputError(field, text, "offset must be -23:59 .. +23:59")
        delta = timedelta(hours=hh, minutes=mm) * sign
        return _ms(naive.replace(tzinfo=UTC) - delta)
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    a, b = _ms(first), _ms(second)
    if a != b:
        # either a skipped time (no local reading maps back) or a repeated one
        back = (_EPOCH + timedelta(milliseconds=a)).astimezone(tz).replace(tzinfo=None)
        what = "occurs twice" if back == naive else "does not exist"
        raise MeterDataInputError(
            field,
            text,
            f"this local time {what} in {tz.key} (daylight saving change); "
            "add an offset, e.g. +01:00 or +02:00",
        )
    return a


def parse_range(
    frm: str, to: str, tz: ZoneInfo, *, from_field: str = "from", to_field: str = "to"
) -> tuple[int, int]:
    """``--from``/``--to`` as UTC ``[start_ms, end_ms)``.

    ``frm`` is an instant as :func:`parse_instant` reads it. ``to`` is one too, except
    that a bare date means the *end* of that local day, so ``--from 2026-11-30 --to
    2026-11-30`` is that one day. Raises :class:`MeterDataInputError` for an unreadable
    value or an empty range.
    """
    start = parse_instant(frm, tz, field=from_field)
    if _DATE_RE.fullmatch(to.strip()):
        end = day_range(parse_date(to, field=to_field), tz)[1]
    else:
        end = parse_instant(to, tz, field=to_field)
    if end <= start:
        raise MeterDataInputError(
            to_field, to, f"must be after {from_field} ({frm}); a bare date includes that day"
        )
    return start, end


def parse_interval(text: str, *, field: str = "interval") -> int:
    """``15m``, ``30m`` or ``1h`` (also ``60m``, ``15min``, ``PT15M``) as milliseconds.

    Raises :class:`MeterDataInputError` for any other length.
    """
    t = text.strip()
    key = _INTERVAL_ALIASES.get(t, _INTERVAL_ALIASES.get(t.upper(), t.lower()))
    ms = INTERVAL_CHOICES_MS.get(key)
    if ms is None:
        raise MeterDataInputError(field, text, "must be one of 15m, 30m, 1h")
    return ms


def align_down(ms: int, interval_ms: int) -> int:
    """The grid boundary at or before ``ms``."""
    return ms - ms % interval_ms


def align_up(ms: int, interval_ms: int) -> int:
    """The grid boundary at or after ``ms``."""
    return -(-ms // interval_ms) * interval_ms
