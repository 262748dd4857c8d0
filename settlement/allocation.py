"""One interval's inputs and allocation, shared by every sharing rule and market.

A rule is a pure function ``allocate(params, interval) -> Allocation`` (see
:mod:`settlement.rules`). Consumers and producers are given in member-id order and
every per-party tuple is aligned with them. Quantities are integer Wh.

Channels (after the Austrian EDA data exchange): for a consumer, G.01 is its
consumption, G.02 its allocated share and G.03 its covered (billed) share; for a
producer, G.01 is its generation and P.01 the community surplus (generation not
covered). :func:`check` enforces the invariants every rule must keep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import le
from typing import NamedTuple

from settlement.clearing.orders import Order
from settlement.errors import SettlementError
from settlement.rounding import apportion


@dataclass(frozen=True, slots=True)
class IntervalInput:
    """What a rule sees of one interval.

    ``index`` is the interval's position in the period and ``hour_of_year`` the whole
    hours since 1 January 00:00 local time (for hourly coefficient schedules).
    ``consumers``/``producers`` are sorted member ids; ``consumption``/``generation``
    are aligned Wh (>= 0). ``bids``/``offers`` are a market's orders for the interval
    when they were given as input (None: derived from measured energy and limits).
    """

    index: int
    hour_of_year: int
    consumers: tuple[str, ...]
    consumption: tuple[int, ...]
    producers: tuple[str, ...]
    generation: tuple[int, ...]
    bids: tuple[Order, ...] | None = None
    offers: tuple[Order, ...] | None = None


class Flow(NamedTuple):
    """``wh`` covered at consumer ``consumer`` from producer ``producer`` (indexes).

    ``price`` and ``fee`` (minor units per MWh) are set by markets; sharing rules
    leave them None and the community price applies.
    """

    producer: int
    consumer: int
    wh: int
    price: int | None = None
    fee: int | None = None


@dataclass(frozen=True, slots=True)
class Allocation:
    """A rule's result for one interval.

    ``allocated`` (G.02) and ``covered`` (G.03) per consumer; ``used`` per producer
    (generation covered somewhere, G.01 - P.01); ``to_community`` per producer: the
    part of its surplus that belongs to the community account (static keys with
    unused shares to the community) rather than returning to the producer;
    ``flows``: who covered whom, every covered Wh attributed to one producer; None
    for a *pooled* rule, whose coverage comes from all producers in proportion to
    ``used`` (attributed over the period by :mod:`settlement.attribution`).
    """

    allocated: tuple[int, ...]
    covered: tuple[int, ...]
    used: tuple[int, ...]
    to_community: tuple[int, ...]
    flows: tuple[Flow, ...] | None


def pooled_use(covered: list[int], generation: tuple[int, ...]) -> list[int]:
    """Each producer's part of the pooled coverage, in proportion to its generation."""
    total = sum(covered)
    return apportion(total, generation) if total else [0] * len(generation)


def attribute_pairs(allocated_pairs: Sequence[Sequence[int]], covered: Sequence[int],
                    ) -> tuple[list[int], list[Flow]]:
    """Split each consumer's coverage among producers in proportion to its allocations.

    ``allocated_pairs[p][j]`` is what producer p allocated to consumer j; consumer j's
    coverage (<= its total allocation) is split by largest remainder over those.
    Returns ``(used per producer, flows)``.
    """
    n_p = len(allocated_pairs)
    used = [0] * n_p
    flows: list[Flow] = []
    for j, v in enumerate(covered):
        if not v:
            continue
        column = [allocated_pairs[p][j] for p in range(n_p)]
        for p, x in enumerate(apportion(v, column)):
            if x:
                flows.append(Flow(p, j, x))
                used[p] += x
    flows.sort(key=lambda f: (f.producer, f.consumer))
    return used, flows


def check(interval: IntervalInput, a: Allocation) -> None:
    """Enforce the invariants of an allocation.

    covered <= consumption, covered <= allocated, used + to_community <= generation,
    every quantity >= 0, flows add up to covered per consumer and to used per
    producer, or for a pooled rule sum used = sum covered (so sum covered = sum
    generated - surplus: nothing created or lost).

    Raises:
        SettlementError: an invariant does not hold (a bug in the rule).
    """
    nc, np_ = len(interval.consumers), len(interval.producers)
    if not (len(a.allocated) == len(a.covered) == nc and len(a.used) == len(a.to_community)
            == np_):
        raise SettlementError(f"interval {interval.index}: allocation has the wrong shape")
    if not (min(a.covered, default=0) >= 0
            and all(map(le, a.covered, interval.consumption))
            and all(map(le, a.covered, a.allocated))):
        j = next(j for j in range(nc) if not 0 <= a.covered[j] <= min(
            interval.consumption[j], a.allocated[j]))
        raise SettlementError(
            f"interval {interval.index}: consumer {interval.consumers[j]} has consumption "
            f"{interval.consumption[j]}, allocated {a.allocated[j]}, covered {a.covered[j]}")
    for p in range(np_):
        g, u, tc = interval.generation[p], a.used[p], a.to_community[p]
        if u < 0 or tc < 0 or u + tc > g:
            raise SettlementError(
                f"interval {interval.index}: producer {interval.producers[p]} generated "
                f"{g}, used {u}, surplus to the community {tc}")
    if a.flows is None:
        if sum(a.used) != sum(a.covered):
            raise SettlementError(f"interval {interval.index}: pooled coverage "
                                  f"{sum(a.covered)} differs from used generation {sum(a.used)}")
        return
    by_c = [0] * nc
    by_p = [0] * np_
    for f in a.flows:
        if f.wh <= 0:
            raise SettlementError(f"interval {interval.index}: flow of {f.wh} Wh")
        by_c[f.consumer] += f.wh
        by_p[f.producer] += f.wh
    if by_c != list(a.covered) or by_p != list(a.used):
        raise SettlementError(f"interval {interval.index}: flows do not add up to the "
                              "covered and used energy")
