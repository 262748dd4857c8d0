"""Tiny shared helpers for the benchmarks under bench/.

Every benchmark prints a human-readable table and, with ``--json``, one JSON
object on the last line of stdout so scripts can pick the figures up::

    parser = argparse.ArgumentParser(description="...")
    add_common_args(parser)          # adds --json
    args = parser.parse_args()
    ...
    report("verify", rows, {"readings_per_s": 123456.0}, args.json)

Benchmarks run as ``python bench/<name>.py``, so the script's own folder is on
``sys.path`` and they import this module as ``from _common import report, ...``.

The JSON object is ``{"title": ..., "rows": [...], "summary": {...},
"peak_rss_mb": ...}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["add_common_args", "peak_rss_mb", "report", "timed"]


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options every benchmark shares (``--json``) and return *parser*."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="also print one JSON object with all figures on the last line",
    )
    return parser


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux: ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@contextmanager
def timed() -> Iterator[list[float]]:
    """Measure wall time of a ``with`` block: ``with timed() as t: ...; t[0]`` is seconds."""
    cell = [0.0]
    start = time.perf_counter()
    try:
        yield cell
    finally:
        cell[0] = time.perf_counter() - start


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def report(
    title: str,
    rows: list[dict[str, Any]],
    summary: dict[str, Any],
    as_json: bool,
) -> None:
    """Print *rows* as an aligned table, then *summary*; with *as_json* end with one JSON line.

    Columns are the union of the rows' keys in first-seen order. Peak RSS is
    added to the summary output automatically.
    """
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    cells = [[_fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    out = sys.stdout
    out.write(f"== {title} ==\n")
    if columns:
        out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + "\n")
        out.write("  ".join("-" * w for w in widths) + "\n")
        for r in cells:
            out.write("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) + "\n")
    rss = round(peak_rss_mb(), 1)
    for key, value in summary.items():
        out.write(f"{key}: {_fmt(value)}\n")
    out.write(f"peak_rss_mb: {rss}\n")
    if as_json:
        out.write(json.dumps({"title": title, "rows": rows, "summary": summary,
                              "peak_rss_mb": rss}, sort_keys=True) + "\n")
    out.flush()
