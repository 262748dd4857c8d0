"""Priority cascade: levels served in order, pro rata by consumption within a level.

``priorities`` maps member id -> level (smaller is served first); members without
one form the last level. Each level gets ``min(left, its consumption)`` shared by
dynamic pro rata; the next level gets what is left. The rest is surplus, back to
the producers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from settlement.allocation import Allocation, IntervalInput, pooled_use
from settlement.rounding import capped_pro_rata
from settlement.rules import register

LAST_LEVEL = 2**31
"""Level of members given no priority."""


@register
@dataclass(frozen=True)
class PriorityCascade:
    """``priorities``: member id -> level (int >= 0, smaller first)."""

    priorities: Mapping[str, int] = field(default_factory=dict)

    NAME = "priority_cascade"
    VERSION = 1

    def allocate(self, interval: IntervalInput) -> Allocation:
        levels: dict[int, list[int]] = {}
        for j, m in enumerate(interval.consumers):
            levels.setdefault(self.priorities.get(m, LAST_LEVEL), []).append(j)
        covered = [0] * len(interval.consumers)
        left = sum(interval.generation)
        for level in sorted(levels):
            members = levels[level]
            parts = capped_pro_rata(left, [interval.consumption[j] for j in members])
            for j, x in zip(members, parts, strict=True):
                covered[j] = x
            left -= sum(parts)
            if not left:
                break
        used = pooled_use(covered, interval.generation)
        c = tuple(covered)
        return Allocation(c, c, tuple(used), (0,) * len(used), None)
