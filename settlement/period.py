"""Settlement periods in the community's time zone, as UTC milliseconds."""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta

from settlement.errors import InputError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


@dataclass(frozen=True)
class Period:
    """``label`` (``2026-11`` or ``2026-11-05``) from ``start_ms`` to ``end_ms`` (UTC)."""

    label: str
    start_ms: int
    end_ms: int


def _ms(dt: datetime) -> int:
    return int(dt.timestamp()) * 1000


def parse_period(label: str, time_zone: str) -> Period:
    """A calendar month (``YYYY-MM``) or day (``YYYY-MM-DD``) in local time.

    Raises:
        InputError: not a month or day.
    """
    tz = zoneinfo.ZoneInfo(time_zone)
    try:
        if m := _MONTH.match(label):
            y, mo = int(m[1]), int(m[2])
            start = datetime(y, mo, 1, tzinfo=tz)
            end = datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=tz)
        elif m := _DAY.match(label):
            start = datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=tz)
            nxt = start.date() + timedelta(days=1)
            end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
        else:
            raise ValueError("format")
    except ValueError:
        raise InputError(f"period must be a month YYYY-MM or a day YYYY-MM-DD, got "
                         f"{label!r}") from None
    return Period(label, _ms(start), _ms(end))


def year_start_ms(ms: int, time_zone: str) -> int:
    """1 January 00:00 local time of the local year containing ``ms``."""
    tz = zoneinfo.ZoneInfo(time_zone)
    local = datetime.fromtimestamp(ms / 1000, tz)
    return _ms(datetime(local.year, 1, 1, tzinfo=tz))
