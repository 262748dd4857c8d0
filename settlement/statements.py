"""Per-member statements (JSON and CSV) and reading them back.

The JSON statement carries the member's lines exactly as committed in the document,
so ``settle prove`` needs nothing else; the CSV has one row per interval with the
channels named after the Austrian EDA data exchange.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from settlement.engine import TOTAL_FIELDS, Result
from settlement.errors import DocumentError

STATEMENT_TYPE = "meterchain-statement"
STATEMENT_VERSION = 1
CSV_COLUMNS = ("interval_start_ms", "quality", "provisional", "G.01_use", "G.02_allocated",
               "G.03_covered", "G.01_generation", "P.01_surplus", "community_surplus",
               "grid_import", "grid_export")


def statement(result: Result, member: str, document_hash: str, revision: int
              ) -> dict[str, Any]:
    """One member's statement: channels, money, counterparties and its lines."""
    lines = result.lines[member]
    counterparties = []
    for ln in lines:
        if ln.startswith("C,"):
            _, _, other, role, wh, amount, fee = ln.split(",")
            counterparties.append({"member": other, "role": "bought" if role == "B" else "sold",
                                   "wh": int(wh), "amount": int(amount), "fee": int(fee)})
    t = result.totals[member]
    return {
        "type": STATEMENT_TYPE, "version": STATEMENT_VERSION,
        "member": member, "community": result.community.name,
        "period": result.period.label, "currency": result.community.currency,
        "document_sha256": document_hash, "revision": revision,
        "channels_wh": {"G.01_use": t["use"], "G.02_allocated": t["allocated"],
                        "G.03_covered": t["covered"], "G.01_generation": t["generation"],
                        "P.01_surplus": t["surplus"],
                        "community_surplus": t["community_surplus"],
                        "grid_import": t["grid_import"], "grid_export": t["grid_export"]},
        "money_minor": {"paid_to_community": t["paid"], "of_which_grid_fees": t["fees"],
                        "received_from_community": t["received"],
                        "grid_import": t["import_amount"], "feed_in": t["export_amount"],
                        "feed_in_to_community": t["community_export_amount"]},
        "provisional_intervals": t["provisional_intervals"],
        "counterparties": counterparties,
        "lines": lines,
    }


def statement_csv(result: Result, member: str) -> str:
    """The member's interval lines as CSV with EDA channel names."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for ln in result.lines[member]:
        if ln.startswith("I,"):
            f = ln.split(",")
            w.writerow([f[2], f[3], f[4], *f[5:]])
    return out.getvalue()


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_statements(result: Result, out_dir: Path, document_hash: str, revision: int) -> None:
    """Write ``members/<id>.json`` and ``members/<id>.csv`` for every member."""
    d = out_dir / "members"
    d.mkdir(parents=True, exist_ok=True)
    for m in result.members:
        st = statement(result, m, document_hash, revision)
        _write(d / f"{m}.json", json.dumps(st, indent=1).encode() + b"\n")
        _write(d / f"{m}.csv", statement_csv(result, m).encode())


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` atomically (temp file, fsync, rename)."""
    _write(path, data)


def read_statement(path: Path) -> dict[str, Any]:
    """A statement file.

    Raises:
        DocumentError: not a statement.
        OSError: unreadable.
    """
    try:
        st = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DocumentError(f"{path}: not JSON: {exc}") from None
    if not isinstance(st, dict) or st.get("type") != STATEMENT_TYPE or not isinstance(
            st.get("lines"), list) or not all(isinstance(x, str) for x in st["lines"]):
        raise DocumentError(f"{path}: not a member statement")
    return st


def totals_from_lines(lines: list[str]) -> dict[str, int]:
    """The member's totals from its ``T`` line (the last line).

    Raises:
        DocumentError: no ``T`` line.
    """
    if not lines or not lines[-1].startswith("T,"):
        raise DocumentError("statement lines do not end with a T line")
    values = lines[-1].split(",")[2:]
    return dict(zip(TOTAL_FIELDS, map(int, values), strict=True))
