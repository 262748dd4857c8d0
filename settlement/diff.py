"""Per-member differences between two revisions of a settlement."""

from __future__ import annotations

from collections.abc import Mapping

from settlement.engine import TOTAL_FIELDS


def member_diffs(old: Mapping[str, Mapping[str, int]], new: Mapping[str, Mapping[str, int]]
                 ) -> dict[str, dict[str, int]]:
    """member -> {field: new - old} for every field that changed (members in either)."""
    out: dict[str, dict[str, int]] = {}
    zero = dict.fromkeys(TOTAL_FIELDS, 0)
    for m in sorted(set(old) | set(new)):
        a, b = old.get(m, zero), new.get(m, zero)
        d = {f: b[f] - a[f] for f in TOTAL_FIELDS if b[f] != a[f]}
        if d:
            out[m] = d
    return out
