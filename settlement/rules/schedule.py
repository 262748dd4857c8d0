"""Coefficient schedules: keys per hour of the year or per interval, per producer pair.

Spain's collective self-consumption allocates each hour ``beta_i * G`` by a published
table of hourly coefficients; here a coefficient is an integer weight valid for a
range of slots (hours of the year, from 1 January 00:00 local time, or interval
positions in the period), for one producer (or ``"*"``: every producer) and one
member. Per producer p, its generation G_p is apportioned among members by the
weights valid in the slot; member i's allocation (G.02) is the sum over producers,
its coverage (G.03) ``min(C_i, allocation)``, attributed to producers in proportion
to what each allocated. A producer with no weight in a slot allocates nothing.
Unused shares are surplus, owned as ``unused`` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from settlement.allocation import Allocation, IntervalInput, attribute_pairs
from settlement.rounding import apportion
from settlement.rules import register
from settlement.rules.static_keys import surplus_owner

ANY_PRODUCER = "*"
SLOT_KINDS = ("hour_of_year", "interval")
NARROW_SLOTS = 48
"""Coefficients valid for at most this many slots are indexed by slot at construction;
wider ones are checked in every slot."""


@dataclass(frozen=True)
class Coefficient:
    """Weight of ``member`` in ``producer``'s generation for slots ``first <= s < end``."""

    first: int
    end: int
    producer: str
    member: str
    weight: int


@register
@dataclass(frozen=True)
class CoefficientSchedule:
    """``coefficients`` in any order; ``slot``: ``"hour_of_year"`` or ``"interval"``."""

    coefficients: tuple[Coefficient, ...] = ()
    slot: str = "hour_of_year"
    unused: str = "producer"
    _by_slot: dict[int, list[Coefficient]] = field(init=False, repr=False, compare=False)
    _wide: list[Coefficient] = field(init=False, repr=False, compare=False)

    NAME = "coefficient_schedule"
    VERSION = 1

    def __post_init__(self) -> None:
        by_slot: dict[int, list[Coefficient]] = {}
        wide = []
        for c in self.coefficients:
            if c.end - c.first <= NARROW_SLOTS:
                for s in range(c.first, c.end):
                    by_slot.setdefault(s, []).append(c)
            else:
                wide.append(c)
        object.__setattr__(self, "_by_slot", by_slot)
        object.__setattr__(self, "_wide", wide)

    def weights(self, slot: int, producer: str, consumers: tuple[str, ...]) -> list[int]:
        """The weights valid for ``producer`` in ``slot``, aligned with ``consumers``."""
        by_member: dict[str, int] = {}
        for c in self._by_slot.get(slot, []) + self._wide:
            if c.first <= slot < c.end and c.producer in (producer, ANY_PRODUCER):
                by_member[c.member] = by_member.get(c.member, 0) + c.weight
        return [by_member.get(m, 0) for m in consumers]

    def allocate(self, interval: IntervalInput) -> Allocation:
        slot = interval.hour_of_year if self.slot == "hour_of_year" else interval.index
        pairs: list[list[int]] = []
        for p, g in zip(interval.producers, interval.generation, strict=True):
            w = self.weights(slot, p, interval.consumers)
            pairs.append(apportion(g, w) if g and sum(w) else [0] * len(w))
        allocated = [sum(col) for col in zip(*pairs, strict=True)] if pairs else (
            [0] * len(interval.consumers))
        covered = [min(c, a) for c, a in zip(interval.consumption, allocated, strict=True)]
        used, flows = attribute_pairs(pairs, covered)
        return Allocation(tuple(allocated), tuple(covered), tuple(used),
                          surplus_owner(interval, used, self.unused), tuple(flows))
