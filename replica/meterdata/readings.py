"""Raw readings of one gateway as CSV, by name and date, filtered by meter and register.

The rows come from the stored blocks themselves (not the index), in chain order, with
the columns of ``GET /v1/gateways/{gw}/readings.csv`` (:data:`replica.csvexport.COLUMNS`,
documented in docs/replica-api.md). Values are exact decimals, never floats.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ledger import Block, block_readings
from ledger.readings import format_obis, parse_obis
from replica.csvexport import COLUMNS, PAGE_BLOCKS, _iso, check_exportable
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


def readings_csv(storage: Storage, rec: GatewayRecord, from_ms: int, to_ms: int,
                 utility_sk: bytes | None, filt: ReadingFilter) -> Iterator[str]:
    """Yield the CSV in chunks, header first (call :func:`check_readings_query` first).

    Raises:
        ChainError: a stored block no longer matches its header (tampered database).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    key_hex = rec.key.hex()
    after = -1
    while True:
        page = storage.blocks_in_time(rec.key, from_ms, to_ms, after, PAGE_BLOCKS)
        for height, record in page:
            block = Block.decode(record)
            for index, (r, _salt) in enumerate(block_readings(block, utility_sk)):
                if not from_ms <= r.timestamp_ms < to_ms or not filt.keeps(r.meter_id, r.obis):
                    continue
                writer.writerow((key_hex, height, index, r.meter_id, r.obis, r.value,
                                 r.exponent, r.decimal, r.unit, r.timestamp_ms,
                                 _iso(r.timestamp_ms), r.clock.name.lower(), r.quality))
            after = height
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
        if len(page) < PAGE_BLOCKS:
            return
