"""Integer apportionment and money rounding: nothing is created or lost.

Every split of an integer quantity (Wh) among several parties uses the largest
remainder method (Hamilton): each party gets the floor of its exact share, and the
units left over go one each to the parties with the largest remainders, ties broken
by position -- callers pass parties sorted by member id, so ties go to the smaller id.
The parts always sum to the total exactly.

Money is kept exact as ``Wh * price`` with prices in minor units per MWh (so one
unit of the product is 10^-6 minor unit) and rounded once per reported amount,
half up (:func:`money`).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter, mul

MICRO = 1_000_000
"""Wh x (minor units per MWh) = 10^-6 minor units."""


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` >= 0 in proportion to ``weights`` (>= 0) by largest remainder.

    Ties between equal remainders go to the earlier position. A part whose exact
    share is an integer never receives a leftover unit, so a part never exceeds
    ``ceil(total * w / W)`` and a zero weight always gets zero.

    Raises:
        ValueError: a negative total or weight, or a positive total with all weights 0.
    """
    if total < 0:
        raise ValueError(f"cannot apportion a negative total {total}")
    n = len(weights)
    wsum = sum(weights)
    if total == 0:
        return [0] * n
    if wsum <= 0:
        raise ValueError(f"cannot apportion {total} over weights summing to {wsum}")
    if min(weights) < 0:
        i = next(i for i, w in enumerate(weights) if w < 0)
        raise ValueError(f"negative weight {weights[i]} at position {i}")
    # divmod(total * w, wsum) per weight, in C-level loops (the hot path of every rule)
    split = list(map(divmod, map(mul, weights, repeat(total)), repeat(wsum)))
    parts = list(map(itemgetter(0), split))
    left = total - sum(parts)
    if left:
        # largest remainder first, ties to the earlier position: one integer key per
        # nonzero remainder r at i, (wsum - r) * n + i, sorts as (-r, i) does (i < n);
        # there are more than ``left`` of them (they sum to left * wsum, each < wsum)
        order = sorted([(wsum - r) * n + i for i, (_, r) in enumerate(split) if r])
        for key in order[:left]:
            parts[key % n] += 1
    return parts


def capped_pro_rata(available: int, demands: Sequence[int]) -> list[int]:
    """``a_i = d_i * min(1, available / sum d)`` in integers: each part <= its demand.

    Raises:
        ValueError: a negative quantity.
    """
    need = sum(demands)
    if available >= need:
        if demands and min(demands) < 0:
            raise ValueError("negative demand")
        return list(demands)
    return apportion(available, demands)


def money(micro: int) -> int:
    """Round an exact amount in 10^-6 minor units to minor units, half away from zero."""
    if micro >= 0:
        return (micro + MICRO // 2) // MICRO
    return -((-micro + MICRO // 2) // MICRO)
