"""Static keys, redistributed: unused shares go to members not yet covered.

Rounds of static keys: the energy left is apportioned among the members still
uncovered by their keys (renormalised); a member whose share reaches its
consumption takes only its consumption and leaves the round; the excess is shared
again, until none is left or every member with a key is covered (water-filling).
G.02 is the final share, equal to G.03. What is left when all are covered is
surplus, owned as ``unused`` says (see :mod:`settlement.rules.static_keys`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from settlement.allocation import Allocation, IntervalInput, pooled_use
from settlement.rounding import apportion
from settlement.rules import register
from settlement.rules.static_keys import surplus_owner


def water_fill(total: int, needs: list[int], weights: list[int]) -> list[int]:
    """Give ``total`` to parties by ``weights``, each capped at its need, redistributing.

    Every round either distributes all that is left or caps at least one party, so at
    most ``len(needs) + 1`` rounds run.
    """
    got = [0] * len(needs)
    active = [i for i, (n, w) in enumerate(zip(needs, weights, strict=True)) if n and w]
    left = total
    while left and active:
        parts = apportion(left, [weights[i] for i in active])
        left = 0
        still = []
        for i, x in zip(active, parts, strict=True):
            room = needs[i] - got[i]
            if x >= room:
                got[i] += room
                left += x - room
            else:
                got[i] += x
                still.append(i)
        if len(still) == len(active):
            break  # nobody capped: all of it was given
        active = still
    return got


@register
@dataclass(frozen=True)
class StaticKeysRedistributed:
    """``keys``: member id -> integer weight (>= 0); ``unused``: owner of the rest."""

    keys: Mapping[str, int] = field(default_factory=dict)
    unused: str = "producer"

    NAME = "static_keys_redistributed"
    VERSION = 1

    def allocate(self, interval: IntervalInput) -> Allocation:
        weights = [self.keys.get(m, 0) for m in interval.consumers]
        covered = water_fill(sum(interval.generation), list(interval.consumption), weights)
        used = pooled_use(covered, interval.generation)
        c = tuple(covered)
        return Allocation(c, c, tuple(used), surplus_owner(interval, used, self.unused),
                          None)
