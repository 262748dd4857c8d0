"""Dynamic pro rata: ``a_i = C_i * min(1, G / sum C)`` (the default in AT, FR, LU).

The pooled generation G covers every consumer in proportion to its consumption;
when G exceeds the community's consumption everyone is covered and the rest is
surplus. Coverage is pooled: each producer supplies it in proportion to its generation.
"""

from __future__ import annotations

from dataclasses import dataclass

from settlement.allocation import Allocation, IntervalInput, pooled_use
from settlement.rounding import capped_pro_rata
from settlement.rules import register


@register
@dataclass(frozen=True)
class ProRata:
    """No parameters: shares follow consumption."""

    NAME = "pro_rata"
    VERSION = 1

    def allocate(self, interval: IntervalInput) -> Allocation:
        covered = capped_pro_rata(sum(interval.generation), interval.consumption)
        used = pooled_use(covered, interval.generation)
        c = tuple(covered)
        return Allocation(c, c, tuple(used), (0,) * len(used), None)
