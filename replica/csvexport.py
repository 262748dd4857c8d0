"""Readings export for billing and analysis: CSV of one gateway over a time range.

One row per reading whose timestamp lies in ``[from_ms, to_ms)``, in chain order.
Values are exact decimals (``value * 10**exponent``, never a float). Sealed blocks
are opened with the utility's X25519 secret key; without it the export is refused
(409 ``sealed``) before any row is produced.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime

from ledger import Block, block_readings
from ledger.errors import ChainError
from replica.errors import Refusal
from replica.storage.base import GatewayRecord, Storage

COLUMNS = ("gateway_key", "height", "index", "meter_id", "obis", "value", "exponent",
           "decimal", "unit", "timestamp_ms", "time_utc", "clock", "quality")
MAX_MS = 2**63 - 1
PAGE_BLOCKS = 200
"""Blocks read from storage per query while streaming."""


def check_exportable(storage: Storage, rec: GatewayRecord, from_ms: int, to_ms: int,
                     utility_sk: bytes | None) -> None:
    """Refuse up front what the export could not finish.

    Raises:
        Refusal: 400 on a bad range; 409 ``sealed`` when sealed blocks lie in the range
            and the replica has no utility key.
    """
    if not 0 <= from_ms <= to_ms <= MAX_MS:
        raise Refusal(400, "malformed", f"want 0 <= from_ms <= to_ms <= 2**63-1, got "
                      f"{from_ms}..{to_ms}")
    if utility_sk is None and storage.sealed_in_time(rec.key, from_ms, to_ms):
        raise Refusal(409, "sealed", "readings in this range are sealed to the utility's key "
                      "and this replica has no utility secret key configured")


def export_csv(storage: Storage, rec: GatewayRecord, from_ms: int, to_ms: int,
               utility_sk: bytes | None) -> Iterator[str]:
    """Yield the CSV text in chunks (header first). Call :func:`check_exportable` first.

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
                if not from_ms <= r.timestamp_ms < to_ms:
                    continue
                writer.writerow((
                    key_hex, height, index, r.meter_id, r.obis, r.value, r.exponent, r.decimal,
                    r.unit, r.timestamp_ms, _iso(r.timestamp_ms), r.clock.name.lower(),
                    r.quality,
                ))
            after = height
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
        if len(page) < PAGE_BLOCKS:
            return


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return ""


__all__ = ["COLUMNS", "ChainError", "check_exportable", "export_csv"]
