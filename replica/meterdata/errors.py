"""Errors of the meter-data engine, under the roots in the error module.

- :class:`MeterDataInputError` -- a value a caller passed (a date, a time, an interval
  length, a time zone, a range, an engine parameter) is wrong. It is also a
  ``ValueError``, so generic code that catches ``ValueError`` keeps working. ``field``
  names what was wrong (``from``, ``interval``, ``tz``, ``interval_ms``), ``value`` is
  the offending value as given, and the message says what would be accepted.
"""

from __future__ import annotations

from ledger.errors import MeterchainError


class MeterDataError(MeterchainError):
    """Root of the errors raised by :mod:`replica.meterdata`."""


class MeterDataInputError(MeterDataError, ValueError):
    """A caller-supplied value is wrong; ``field`` names it, the message says the fix."""

    def __init__(self, field: str, value: object, message: str) -> None:
        self.field = field
        self.value = value
        self.message = message
        super().__init__(f"{field}: {message} (got {value!r})")
