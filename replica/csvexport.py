"""Readings export for billing and analysis: CSV of one gateway over a time range.

One row per reading whose timestamp lies in ``[from_ms, to_ms)``, in chain order.
Values are exact decimals (``value * 10**exponent``, never a float). Sealed blocks
are opened with the utility's X25519 secret key; without it the export is refused
(409 ``sealed``) before any row is produced. The whole export is written (to a spooled
temporary file) before the first byte is sent, so a block that cannot be opened is
found before streaming and the answer is never cut off.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from ledger import Block, Reading, block_readings
from ledger.errors import ChainError, MalformedError
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


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these is read as a formula by spreadsheets (OWASP
"CSV Injection"): such cells get a leading apostrophe."""
MAX_LISTED = 100
"""Heights named in a refusal or an omission header, at most."""
SPOOL_MEMORY = 1024 * 1024
"""Bytes of a finished export kept in memory before it spills to a temporary file."""


def neutralise(cell: str) -> str:
    """The text cell, prefixed with ``'`` when a spreadsheet would run it as a formula."""
    return "'" + cell if cell.startswith(FORMULA_START) else cell


@dataclass
class Export:
    """A finished export: the CSV in a spooled file, and the heights it left out."""

    file: IO[bytes]
    omitted: list[int]
    rows: int

    def chunks(self, size: int = 64 * 1024) -> Iterator[bytes]:
        """The CSV bytes, then the file is closed."""
        try:
            self.file.seek(0)
            while chunk := self.file.read(size):
                yield chunk
        finally:
            self.file.close()


def build_export(storage: Storage, rec: GatewayRecord, from_ms: int, to_ms: int,
                 utility_sk: bytes | None, *, skip_unreadable: bool = False,
                 keep: Callable[[Reading], bool] | None = None) -> Export:
    """Write the whole CSV before anything is sent, so nothing is ever cut off mid-stream.

    Call :func:`check_exportable` first. Text cells (meter id, OBIS, unit) are
    neutralised against formula injection (:func:`neutralise`). ``keep`` (when given)
    selects readings, e.g. by meter and register.

    Raises:
        Refusal: 422 ``unreadable-blocks`` with ``heights`` (the first 100) and ``count``
            when a block in the range cannot be opened (sealed to another key) or does
            not match its header -- unless ``skip_unreadable``, when those blocks are
            left out and listed in :attr:`Export.omitted`.
    """
    out: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (Export.chunks closes)
        max_size=SPOOL_MEMORY, mode="w+b")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    key_hex = rec.key.hex()
    omitted: list[int] = []
    rows = 0
    after = -1
    try:
        while True:
            page = storage.blocks_in_time(rec.key, from_ms, to_ms, after, PAGE_BLOCKS)
            for height, record in page:
                after = height
                try:
                    readings = block_readings(Block.decode(record), utility_sk)
                except (ChainError, MalformedError):
                    omitted.append(height)
                    continue
                for index, (r, _salt) in enumerate(readings):
                    if not from_ms <= r.timestamp_ms < to_ms or (keep and not keep(r)):
                        continue
                    writer.writerow((
                        key_hex, height, index, neutralise(r.meter_id), neutralise(r.obis),
                        r.value, r.exponent, r.decimal, neutralise(r.unit), r.timestamp_ms,
                        _iso(r.timestamp_ms), r.clock.name.lower(), r.quality,
                    ))
                    rows += 1
            out.write(buf.getvalue().encode("utf-8"))
            buf.seek(0)
            buf.truncate()
            if len(page) < PAGE_BLOCKS:
                break
    except BaseException:
        out.close()
        raise
    if omitted and not skip_unreadable:
        out.close()
        raise Refusal(422, "unreadable-blocks",
                      f"{len(omitted)} block(s) in the range cannot be opened with this "
                      "replica's key or do not match their headers; nothing was exported "
                      "(ask again with skip_unreadable=1 to export the rest)",
                      heights=omitted[:MAX_LISTED], count=len(omitted))
    return Export(out, omitted, rows)


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return ""


__all__ = ["COLUMNS", "Export", "build_export", "check_exportable", "neutralise"]
