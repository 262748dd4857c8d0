"""Pure interval engine speed: a month of 15-minute intervals for many metering points.

    python bench/_intervals_engine.py [--points 1000] [--days 31] [--json]

The engine part of bench/intervals.py (which owns storage, index and HTTP figures and
may call :func:`engine_rows` and :func:`pandas_rows` from here). Each point has one
cumulative register read every 5 minutes with 0-4 s of jitter for ``--days`` days
(31 days: 8,928 readings, 2,976 intervals), with a 40-minute gap, a 5-hour gap and
one reading from an unsynchronised clock, so every rule of docs/intervals.md runs.
Data generation is not timed.

Timed per point, as the replica will do it: rows as a database returns them
``(ts_ms, wh, gateway, height, index, flags)`` -> ``RegisterColumns.from_rows`` ->
``compute_intervals`` (validation, boundaries, intervals with traces). Target for
1,000 points x 31 days (about 9 M readings): <= 30 s, and not slower than the pandas
reference below on the same rows in the same run.

The pandas reference is what a data engineer would write for the same question: a
time-indexed Series per point, reindexed onto the union with the 15-minute grid,
``interpolate(method="time")``, floored, ``merge_asof(direction="nearest",
tolerance=...)`` for the boundaries read within tolerance, ``diff()``. It does less
than the engine (floats, no validation, no traces, every gap linear) and is only a
speed reference; but where it computes the same thing it must give the same numbers:
after the timed runs, :func:`compare_values` checks both interval by interval
(untimed; the engine's estimated intervals, from comparable days, apart), and the
summary says ``same_values``. It runs when pandas is installed; otherwise its row
says so.

A calibration measured in the same run (SHA-256 of 200 B per second, and a pure
Python loop) is printed beside the figures, since machine speed varies by about 3x.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import add_common_args, report  # noqa: E402

from replica.meterdata import Quality, RegisterColumns, compute_intervals  # noqa: E402

MIN = 60_000
STEP = 15 * MIN
CADENCE = 5 * MIN
T0 = 1_795_993_200_000 // STEP * STEP  # 2026-11-29T23:00Z, a Vienna midnight
GATEWAY = "5e1f" * 16

Rows = list[tuple[int, int, str, int, int, int]]


def point_rows(point: int, days: int) -> Rows:
    """One point's readings (deterministic from ``point``), in ledger order."""
    n = days * 24 * 60 * MIN // CADENCE
    out: Rows = []
    wh = 1_000_000 + point * 1_000
    gap40 = (2 * 288 + 100 + point % 50, 8)  # 8 readings missing: 40 minutes
    gap5h = (9 * 288 + 60 + point % 100, 60)  # 60 readings missing: 5 hours
    unsync = 20 * 288 + point % 200
    per_block = 10
    for k in range(n):
        wh += 5 + (k * 7919 + point * 104729) % 40
        if gap40[0] <= k < gap40[0] + gap40[1] or gap5h[0] <= k < gap5h[0] + gap5h[1]:
            continue
        ts = T0 + k * CADENCE + (k * 2654435761 + point) % 4001
        out.append((ts, wh, GATEWAY, k // per_block, k % per_block, 1 if k == unsync else 0))
    return out


def engine_rows(rows: Rows, start_ms: int, end_ms: int) -> tuple[int, int]:
    """One point through the engine; returns (intervals, measured intervals)."""
    series = compute_intervals(
        RegisterColumns.from_rows(rows), start_ms=start_ms, end_ms=end_ms, interval_ms=STEP
    )
    return len(series.intervals), sum(1 for i in series.intervals if i.quality is Quality.MEASURED)


def pandas_rows(rows: Rows, start_ms: int, end_ms: int) -> tuple[int, int]:
    """The same point with the pandas reference; returns (intervals, measured)."""
    energy, measured = pandas_intervals(rows, start_ms, end_ms)
    return len(energy), int(measured.sum())


def pandas_intervals(rows: Rows, start_ms: int, end_ms: int) -> tuple[Any, Any]:
    """The pandas reference: (energy per interval, float with NaN; read at both ends)."""
    import numpy as np
    import pandas as pd

    df = pd.DataFrame(rows, columns=["ts", "wh", "gateway", "height", "index", "flags"])
    df = df[(df["flags"] & 3) == 0]  # readings with a doubtful clock are not used
    ts = pd.to_datetime(df["ts"].to_numpy(), unit="ms")
    s = pd.Series(df["wh"].to_numpy(), index=ts, dtype="float64")
    grid = pd.date_range(
        pd.to_datetime(start_ms, unit="ms"), pd.to_datetime(end_ms, unit="ms"), freq="15min"
    )
    line = s.reindex(s.index.union(grid)).interpolate(method="time", limit_area="inside")
    at = np.floor(line.reindex(grid).to_numpy())
    near = pd.merge_asof(
        pd.DataFrame({"b": grid}),
        pd.DataFrame({"t": ts, "v": s.to_numpy()}),
        left_on="b",
        right_on="t",
        direction="nearest",
        tolerance=pd.Timedelta(milliseconds=STEP // 100),
    )
    read = near["v"].notna().to_numpy()
    values = np.where(read, near["v"].to_numpy(), at)
    energy = np.diff(values)
    measured = read[:-1] & read[1:]
    return energy, measured


def compare_values(rows: Rows, start_ms: int, end_ms: int) -> dict[str, int]:
    """Engine and pandas reference interval by interval on one point's rows (untimed).

    Counts intervals whose value differs (``wh`` None against NaN counts as equal),
    leaving out the engine's ``estimated`` ones: the reference bridges a long gap with
    a straight line where the engine follows comparable days (docs/intervals.md I4),
    so those are counted apart. Also counts intervals measured by one and not the other.
    """
    import math

    series = compute_intervals(
        RegisterColumns.from_rows(rows), start_ms=start_ms, end_ms=end_ms, interval_ms=STEP
    )
    energy, measured = pandas_intervals(rows, start_ms, end_ms)
    out = {"compared": 0, "differing": 0, "estimated_skipped": 0, "measured_differing": 0}
    for iv, e, m in zip(series.intervals, energy.tolist(), measured.tolist(), strict=True):
        if (iv.quality is Quality.MEASURED) != m:
            out["measured_differing"] += 1
        if iv.quality is Quality.ESTIMATED:
            out["estimated_skipped"] += 1
            continue
        out["compared"] += 1
        theirs = None if math.isnan(e) else int(e)
        if theirs != iv.wh:
            out["differing"] += 1
    return out


def calibration() -> dict[str, float]:
    """SHA-256 of 200 B per second and pure-Python loop iterations per second."""
    data = b"x" * 200
    t = time.perf_counter()
    for _ in range(100_000):
        hashlib.sha256(data).digest()
    sha = 100_000 / (time.perf_counter() - t)
    t = time.perf_counter()
    acc = 0
    for i in range(1_000_000):
        acc += i & 7
    loop = 1_000_000 / (time.perf_counter() - t)
    return {"sha256_200B_per_s": sha, "python_loop_per_s": loop}


def run(
    name: str, fn: Callable[[Rows, int, int], tuple[int, int]], points: int, days: int
) -> dict[str, Any]:
    """Time ``fn`` over every point; each point's rows are made (untimed) just before.

    Rows are made per point rather than all at once, as the replica reads one point at
    a time: 9 M rows kept alive would make every garbage collection pass walk them.
    """
    start, end = T0, T0 + days * 96 * STEP
    readings = intervals = measured = 0
    wall = cpu = 0.0
    for p in range(points):
        rows = point_rows(p, days)
        readings += len(rows)
        w0, c0 = time.perf_counter(), time.process_time()
        n, m = fn(rows, start, end)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        intervals += n
        measured += m
    return {
        "implementation": name,
        "points": points,
        "readings": readings,
        "intervals": intervals,
        "measured": measured,
        "wall_s": wall,
        "cpu_s": cpu,
        "readings_per_s": readings / wall if wall else 0.0,
        "ms_per_point": 1000 * wall / max(1, points),
    }


def compare_all(points: int, days: int) -> dict[str, Any]:
    """:func:`compare_values` over every point (untimed), as summary fields."""
    start, end = T0, T0 + days * 96 * STEP
    total: dict[str, int] = {}
    for p in range(points):
        for k, v in compare_values(point_rows(p, days), start, end).items():
            total[k] = total.get(k, 0) + v
    return {
        "values_compared": total["compared"],
        "values_differing": total["differing"],
        "estimated_not_compared": total["estimated_skipped"],
        "same_values": total["differing"] == 0 and total["measured_differing"] == 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--no-pandas", action="store_true", help="skip the pandas reference")
    add_common_args(parser)
    args = parser.parse_args(argv)
    cal = calibration()
    rows = [run("meterchain engine", engine_rows, args.points, args.days)]
    summary: dict[str, Any] = {
        "points": args.points,
        "days": args.days,
        "engine_wall_s": rows[0]["wall_s"],
        "engine_readings_per_s": rows[0]["readings_per_s"],
        "engine_1000_points_s_extrapolated": rows[0]["ms_per_point"],
        **cal,
    }
    pandas_ok = False
    if not args.no_pandas:
        try:
            import pandas  # noqa: F401
        except ImportError:
            rows.append({"implementation": "pandas reference: pandas not installed"})
        else:
            pandas_ok = True
            rows.append(run("pandas reference", pandas_rows, args.points, args.days))
    if pandas_ok:
        summary["pandas_wall_s"] = rows[1]["wall_s"]
        summary["engine_speedup_vs_pandas"] = rows[1]["wall_s"] / max(rows[0]["wall_s"], 1e-9)
        # same rows, same grid, same tolerance: the same intervals read at both ends
        summary["same_measured_count"] = rows[0]["measured"] == rows[1]["measured"]
        summary.update(compare_all(args.points, args.days))
    report("intervals engine (15-minute intervals, one month)", rows, summary, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
