"""The community's energy per interval, summed from the members' interval lines.

What ``meterchain settle publish`` gives the replica for its Community page: for every
interval start, over all members, ``generation`` (sum of ``generation``),
``consumption`` (sum of ``use``), ``covered`` (energy shared inside the community, sum
of ``covered``), ``surplus`` (sum of ``surplus``: generation not covered in the
community, fed to the grid) and ``grid_import`` (residual import, sum of
``grid_import``). Integers in Wh; sums only, so nothing is rounded, and by the
engine's invariant ``covered = generation - surplus`` in every interval.
"""

from __future__ import annotations

from collections.abc import Iterable

FIELDS = ("generation", "consumption", "covered", "surplus", "grid_import")
"""Columns of a flow row after its interval start (ms), in order."""


def community_flows(member_lines: Iterable[Iterable[str]]) -> list[tuple[int, ...]]:
    """Rows ``(start_ms, generation, consumption, covered, surplus, grid_import)`` in
    start order, from each member's output lines (``docs/settlement.md`` section 6).

    Raises:
        ValueError: an interval line has non-integer fields.
    """
    acc: dict[int, list[int]] = {}
    for lines in member_lines:
        for ln in lines:
            if not ln.startswith("I,"):
                continue
            f = ln.split(",")
            use, covered, gen, surplus, grid_import = (int(f[5]), int(f[7]), int(f[8]),
                                                       int(f[9]), int(f[11]))
            a = acc.get(int(f[2]))
            if a is None:
                a = acc[int(f[2])] = [0, 0, 0, 0, 0]
            a[0] += gen
            a[1] += use
            a[2] += covered
            a[3] += surplus
            a[4] += grid_import
    return [(t, *acc[t]) for t in sorted(acc)]
