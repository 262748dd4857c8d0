"""The demo community's households: their meters and one day of their readings.

Synthetic but shaped like the real thing, and integer all the way: sunrise and sunset,
a 10 kWp roof's clear-day peak and a heat pump's draw by month for Vienna, each
household's use by hour of the day, seeded noise per gateway and day (the same day
gives the same readings every time). :mod:`meterchain.demo_community` seals them.
"""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass

from ledger import Reading

TIME_ZONE = "Europe/Vienna"
STEP_MS = 5 * 60 * 1000
"""The simulated meters are read every 5 minutes."""
IMPORT, EXPORT = "1-0:1.8.0", "1-0:2.8.0"

# Vienna by month: sunrise and sunset (minutes after local midnight), clear-day peak of
# a 10 kWp south-facing roof (W), and a heat pump's average draw (W).
SUNRISE = (465, 425, 370, 365, 315, 295, 310, 350, 395, 440, 430, 460)
SUNSET = (990, 1035, 1075, 1180, 1220, 1255, 1250, 1210, 1145, 1080, 985, 960)
PV_PEAK_W = (4000, 5500, 6500, 7500, 8000, 8000, 8000, 7500, 6500, 5500, 4000, 3500)
HEAT_PUMP_W = (1200, 1100, 800, 400, 150, 100, 100, 100, 200, 500, 900, 1100)

# Households' use by local hour (W) before noise.
ANNA = (120, 110, 110, 110, 110, 120, 300, 650, 400, 150, 150, 150,
        200, 150, 150, 150, 180, 350, 550, 600, 500, 400, 250, 150)
BEN = (250, 230, 230, 230, 250, 300, 700, 900, 500, 300, 300, 350,
       450, 350, 300, 350, 600, 1200, 1500, 1300, 1000, 700, 450, 300)
CLARA = (180, 160, 160, 160, 160, 200, 450, 600, 300, 200, 200, 250,
         300, 220, 200, 220, 400, 700, 800, 750, 600, 450, 300, 200)
DORA = (150, 140, 140, 140, 140, 150, 200, 450, 500, 450, 400, 600,
        900, 400, 350, 350, 400, 500, 550, 500, 400, 300, 200, 160)


@dataclass(frozen=True)
class Meter:
    """A simulated meter: its id on its gateway, the register it counts, its start."""

    meter_id: str
    obis: str
    base_wh: int
    watts: Callable[[dt.datetime, random.Random], int]


@dataclass(frozen=True)
class Gateway:
    name: str
    site: str
    meters: tuple[Meter, ...]


def _use(profile: tuple[int, ...], heat_pump: bool = False
         ) -> Callable[[dt.datetime, random.Random], int]:
    def watts(t: dt.datetime, rng: random.Random) -> int:
        w = profile[t.hour] * rng.randint(85, 115) // 100
        if heat_pump:  # cycles on and off around its monthly average
            w += HEAT_PUMP_W[t.month - 1] * rng.randint(0, 200) // 100
        return w
    return watts


def _pv(t: dt.datetime, rng: random.Random) -> int:
    """A clear day's arc from sunrise to sunset, thinned by passing clouds."""
    m = t.month - 1
    minute = t.hour * 60 + t.minute
    rise, set_ = SUNRISE[m] + 20, SUNSET[m] - 20
    if not rise < minute < set_:
        return 0
    length = set_ - rise
    arc = PV_PEAK_W[m] * 4 * (minute - rise) * (set_ - minute) // (length * length)
    return arc * rng.randint(70, 100) // 100


GATEWAYS = (
    Gateway("sonnenhof-house", "apartment building, meters on RS-485", (
        Meter("anna-grid", IMPORT, 3_215_400, _use(ANNA)),
        Meter("ben-grid", IMPORT, 9_871_020, _use(BEN, heat_pump=True)),
        Meter("dora-grid", IMPORT, 5_402_770, _use(DORA)))),
    Gateway("sonnenhof-clara", "clara's house with a 10 kWp rooftop PV system", (
        Meter("clara-grid", IMPORT, 6_120_010, _use(CLARA)),
        Meter("clara-pv", EXPORT, 21_004_300, _pv))),
)

MEMBERS = (  # member -> (consumption points, generation points, who they are)
    ("anna", ("sonnenhof-anna",), (), "flat, one person"),
    ("ben", ("sonnenhof-ben",), (), "family flat with a heat pump"),
    ("clara", ("sonnenhof-clara",), ("sonnenhof-clara-pv",),
     "house with 10 kWp rooftop PV, no battery"),
    ("dora", ("sonnenhof-dora",), (), "retired, at home by day"),
)
POINTS = (  # point, role, member, gateway, meter
    ("sonnenhof-anna", "grid", "anna", "sonnenhof-house", "anna-grid"),
    ("sonnenhof-ben", "grid", "ben", "sonnenhof-house", "ben-grid"),
    ("sonnenhof-dora", "grid", "dora", "sonnenhof-house", "dora-grid"),
    ("sonnenhof-clara", "grid", "clara", "sonnenhof-clara", "clara-grid"),
    ("sonnenhof-clara-pv", "pv", "clara", "sonnenhof-clara", "clara-pv"),
)


def past_day(now: dt.datetime | None = None) -> dt.date:
    """Yesterday in the community's time zone."""
    tz = zoneinfo.ZoneInfo(TIME_ZONE)
    return ((now or dt.datetime.now(dt.UTC)).astimezone(tz) - dt.timedelta(days=1)).date()


def day_bounds_ms(day: dt.date) -> tuple[int, int]:
    """Local midnight to local midnight, UTC milliseconds (23 to 25 hours across DST)."""
    tz = zoneinfo.ZoneInfo(TIME_ZONE)
    nxt = day + dt.timedelta(days=1)
    start = dt.datetime(day.year, day.month, day.day, tzinfo=tz)
    end = dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
    return int(start.timestamp()) * 1000, int(end.timestamp()) * 1000


def day_readings(gw: Gateway, day: dt.date, after_ms: int,
                 registers: dict[tuple[str, str], int]) -> list[list[Reading]]:
    """The gateway's readings every 5 minutes from local midnight to the next, grouped
    per reading time; only times after ``after_ms``, registers continuing from
    ``registers`` ((meter, obis) -> Wh, updated). Deterministic for a day."""
    start, end = day_bounds_ms(day)
    tz = zoneinfo.ZoneInfo(TIME_ZONE)
    rng = random.Random(f"{gw.name}/{day.isoformat()}")
    out = []
    used: dict[tuple[str, str], int] = {}  # W summed over steps since the first reading
    first: dict[tuple[str, str], int] = {}
    for ts in range(start, end + 1, STEP_MS):
        local = dt.datetime.fromtimestamp(ts // 1000, tz)
        round_ = []
        for m in gw.meters:
            key = (m.meter_id, m.obis)
            watts = m.watts(local, rng)  # drawn for every time: the same day, the same values
            if ts <= after_ms:
                continue
            if key not in first:
                first[key] = registers.get(key, m.base_wh)
                used[key] = watts if key in registers else 0
            else:
                used[key] += watts
            # whole Wh counted, the fraction carried: 5 minutes at W watts is W/12 Wh
            registers[key] = first[key] + used[key] * STEP_MS // 3_600_000
            round_.append(Reading.make(m.meter_id, m.obis, registers[key], 0, "Wh", ts))
        if round_:
            out.append(round_)
    return out
