"""Exact value text of serial meters (DSMR P1, IEC 62056-21) to ledger values.

Pure functions shared by :mod:`drivers.dsmr` and :mod:`drivers.iec62056`: decimal
text such as ``001234.567`` becomes an integer and a decimal exponent without any
float, units are normalised to the vocabulary's base units (``kWh`` -> ``Wh`` by
adding 3 to the exponent), and meter timestamps ``YYMMDDhhmmssX`` in Central
European local time become UTC milliseconds.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from drivers.quantities import QUANTITIES

_DECIMAL_RE = re.compile(r"^([+-]?)(\d*)(?:\.(\d*))?$")
_TIMESTAMP_RE = re.compile(r"^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})([SW]?)$")

UNIT_SCALE: dict[str, tuple[str, int]] = {
    "kWh": ("Wh", 3),
    "MWh": ("Wh", 6),
    "Wh": ("Wh", 0),
    "kW": ("W", 3),
    "MW": ("W", 6),
    "W": ("W", 0),
    "kvarh": ("varh", 3),
    "varh": ("varh", 0),
    "kvar": ("var", 3),
    "var": ("var", 0),
    "kVAh": ("VAh", 3),
    "VAh": ("VAh", 0),
    "kVA": ("VA", 3),
    "VA": ("VA", 0),
    "V": ("V", 0),
    "A": ("A", 0),
    "Hz": ("Hz", 0),
    "m3": ("m3", 0),
}
"""Unit as meters write it -> (vocabulary unit, exponent to add)."""

CET = dt.timedelta(hours=1)
CEST = dt.timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class Value:
    """An exact value: ``value * 10**exponent unit``."""

    value: int
    exponent: int
    unit: str


def parse_decimal(text: str) -> tuple[int, int]:
    """``"001234.567"`` -> ``(1234567, -3)``; exact, no float.

    Raises:
        ValueError: the text is not a plain decimal number.
    """
    m = _DECIMAL_RE.match(text.strip())
    if not m or not (m.group(2) or m.group(3)):
        raise ValueError(f"not a decimal number: {text!r}")
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    value = int((whole or "0") + frac)
    return (-value if sign == "-" else value), -len(frac)


def parse_value(text: str) -> Value:
    """``"001234.567*kWh"`` -> ``Value(1234567, 0, "Wh")`` (unit normalised).

    A value without ``*unit`` gets the empty unit. A unit not in :data:`UNIT_SCALE`
    is kept as written.

    Raises:
        ValueError: the number part is not a decimal number.
    """
    number, _, unit = text.partition("*")
    value, exponent = parse_decimal(number)
    base, shift = UNIT_SCALE.get(unit, (unit, 0))
    return Value(value, exponent + shift, base)


def vocabulary_unit(obis: str) -> str | None:
    """The unit the vocabulary (:mod:`drivers.quantities`) lists for ``obis``, or None."""
    q = QUANTITIES.get(obis)
    return q.unit if q else None


def _last_sunday(year: int, month: int) -> dt.date:
    last = dt.date(year, month, 31)
    return last - dt.timedelta(days=(last.weekday() + 1) % 7)


def is_eu_summer_time(utc: dt.datetime) -> bool:
    """True if EU summer time is in force at the naive UTC instant ``utc``.

    EU rule (since 1996): from the last Sunday of March 01:00 UTC to the last Sunday
    of October 01:00 UTC.
    """
    start = dt.datetime.combine(_last_sunday(utc.year, 3), dt.time(1))
    end = dt.datetime.combine(_last_sunday(utc.year, 10), dt.time(1))
    return start <= utc < end


@dataclass(frozen=True, slots=True)
class MeterTime:
    """A meter timestamp converted to UTC.

    ``dst`` says summer time was applied; ``flagged`` says the meter sent the S/W flag
    (otherwise the EU rule decided).
    """

    utc_ms: int
    dst: bool
    flagged: bool

    @property
    def meter_dst(self) -> bool:
        """True when the meter itself reported summer time."""
        return self.flagged and self.dst


def parse_meter_time(text: str) -> MeterTime:
    """``YYMMDDhhmmssX`` local Central European time -> UTC milliseconds.

    ``X`` is ``S`` (summer, CEST = UTC+2) or ``W`` (winter, CET = UTC+1) and decides
    the offset, so the repeated hour in October is unambiguous. Without the flag
    (DSMR 2.2/3 gas timestamps) the EU rule decides; in the repeated October hour
    the first (summer) occurrence is taken, and a time inside the skipped March hour
    is read as winter time.

    Raises:
        ValueError: not a valid timestamp.
    """
    m = _TIMESTAMP_RE.match(text)
    if not m:
        raise ValueError(f"not a meter timestamp YYMMDDhhmmss[SW]: {text!r}")
    yy, mo, dd, hh, mi, ss = (int(g) for g in m.groups()[:6])
    local = dt.datetime(2000 + yy, mo, dd, hh, mi, ss)  # ValueError on a bad date
    flag = m.group(7)
    # without a flag: summer if that reading is valid (also in the repeated hour)
    dst = flag == "S" if flag else is_eu_summer_time(local - CEST)
    utc = local - (CEST if dst else CET)
    epoch = dt.datetime(1970, 1, 1)
    return MeterTime((utc - epoch) // dt.timedelta(milliseconds=1), dst, bool(flag))
