"""Meter data at the replica: validated interval energy from signed register readings.

The engine here is pure (no file, database, socket or clock): :mod:`.vee` validates one
register's readings, :mod:`.intervals` turns them into quality-marked interval energy
(:mod:`.estimate` fills long gaps), :mod:`.totals` sums days and months,
:mod:`.calendar` maps local days and months to UTC ranges and parses the dates, times
and interval lengths users type. docs/intervals.md is the normative description.
"""

from replica.meterdata.errors import MeterDataError, MeterDataInputError
from replica.meterdata.intervals import (
    DEFAULT_MAX_LINEAR_GAP_MS,
    PROFILE_LOOKBACK_MS,
    RULES,
    Boundary,
    Interval,
    IntervalSeries,
    Quality,
    compute_intervals,
    default_tolerance_ms,
    largest_remainder,
)
from replica.meterdata.totals import PeriodTotal, aggregate
from replica.meterdata.vee import (
    FINDING_KINDS,
    Finding,
    Origin,
    PowerSample,
    RegisterColumns,
    RegisterSample,
    screen,
)

__all__ = [
    "DEFAULT_MAX_LINEAR_GAP_MS",
    "FINDING_KINDS",
    "PROFILE_LOOKBACK_MS",
    "RULES",
    "Boundary",
    "Finding",
    "Interval",
    "IntervalSeries",
    "MeterDataError",
    "MeterDataInputError",
    "Origin",
    "PeriodTotal",
    "PowerSample",
    "Quality",
    "RegisterColumns",
    "RegisterSample",
    "aggregate",
    "compute_intervals",
    "default_tolerance_ms",
    "largest_remainder",
    "screen",
]
