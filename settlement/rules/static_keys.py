"""Static keys: member i is allocated ``k_i / sum k`` of the pooled generation G.

G.02 (allocated) is the key's share, G.03 (covered) ``min(C_i, share)``. What a
member does not use is surplus; ``unused`` says whose: ``"producer"`` (it returns to
the producers, each keeping its own part) or ``"community"`` (the community account
sells it). Members without a key get nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from settlement.allocation import Allocation, IntervalInput, pooled_use
from settlement.rounding import apportion
from settlement.rules import register

UNUSED_MODES = ("producer", "community")


def surplus_owner(interval: IntervalInput, used: list[int], unused: str) -> tuple[int, ...]:
    """Per producer, the part of its surplus that goes to the community account."""
    if unused == "community":
        return tuple(g - u for g, u in zip(interval.generation, used, strict=True))
    return (0,) * len(used)


@register
@dataclass(frozen=True)
class StaticKeys:
    """``keys``: member id -> integer weight (>= 0); ``unused``: see module doc."""

    keys: Mapping[str, int] = field(default_factory=dict)
    unused: str = "producer"

    NAME = "static_keys"
    VERSION = 1

    def allocate(self, interval: IntervalInput) -> Allocation:
        weights = [self.keys.get(m, 0) for m in interval.consumers]
        total = sum(interval.generation)
        allocated = apportion(total, weights) if sum(weights) else [0] * len(weights)
        covered = [min(c, a) for c, a in zip(interval.consumption, allocated, strict=True)]
        used = pooled_use(covered, interval.generation)
        return Allocation(tuple(allocated), tuple(covered), tuple(used),
                          surplus_owner(interval, used, self.unused), None)
