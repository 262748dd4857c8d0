"""Raw readings of one gateway as CSV, by name and date, filtered by meter and register.

The rows come from the stored blocks themselves (not the index), in chain order, built by
the gateway export (:func:`replica.csvexport.build_export`, so the same columns, the same
formula-injection guard, never cut off); this module adds the filters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.readings import format_obis, parse_obis
from replica.csvexport import Export, build_export, check_exportable
from replica.errors import Refusal
from replica.storage.base import GatewayRecord, Storage

MAX_FILTER_VALUES = 100
"""Most meter ids or registers one request may filter by."""


@dataclass(frozen=True, slots=True)
class ReadingFilter:
    """Which readings to keep: meter ids and OBIS codes (empty: all)."""

    meters: frozenset[str]
    registers: frozenset[str]

    def keeps(self, meter_id: str, obis: str) -> bool:
        return ((not self.meters or meter_id in self.meters)
                and (not self.registers or obis in self.registers))


def check_readings_query(storage: Storage, rec: GatewayRecord, from_ms: int, to_ms: int,
                         utility_sk: bytes | None, meters: Sequence[str],
                         registers: Sequence[str]) -> ReadingFilter:
    """Check a readings request before the first row is produced.

    Raises:
        Refusal: 400 for a bad range, register or too many filter values; 409
            ``sealed`` when sealed blocks lie in the range and no utility key is set.
    """
    if len(meters) > MAX_FILTER_VALUES or len(registers) > MAX_FILTER_VALUES:
        raise Refusal(400, "malformed", f"at most {MAX_FILTER_VALUES} meters and registers "
                      "per request")
    regs = set()
    for r in registers:
        try:
            regs.add(format_obis(parse_obis(r.strip())))
        except ValueError:
            raise Refusal(400, "malformed", f"register {r[:40]!r} is not an OBIS code such as "
                          "1-0:1.8.0", field="register") from None
    check_exportable(storage, rec, from_ms, to_ms, utility_sk)
    return ReadingFilter(frozenset(meters), frozenset(regs))


def readings_export(storage: Storage, rec: GatewayRecord, from_ms: int, to_ms: int,
                    utility_sk: bytes | None, filt: ReadingFilter) -> Export:
    """The whole filtered CSV, built before anything is sent (call
    :func:`check_readings_query` first); see :func:`replica.csvexport.build_export`.

    Raises:
        Refusal: 422 ``unreadable-blocks`` when a block in the range cannot be opened or
            does not match its header (nothing is exported).
    """
    return build_export(storage, rec, from_ms, to_ms, utility_sk,
                        keep=lambda r: filt.keeps(r.meter_id, r.obis))
