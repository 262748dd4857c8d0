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
    parts = [0] * n
    rems = [0] * n
    given = 0
    for i, w in enumerate(weights):
        if w < 0:
            raise ValueError(f"negative weight {w} at position {i}")
        q, r = divmod(total * w, wsum)
        parts[i] = q
        rems[i] = r
        given += q
    left = total - given
    if left:
        order = sorted((i for i in range(n) if rems[i]), key=lambda i: (-rems[i], i))
        for i in order[:left]:
            parts[i] += 1
    return parts


def capped_pro_rata(available: int, demands: Sequence[int]) -> list[int]:
    """``a_i = d_i * min(1, available / sum d)`` in integers: each part <= its demand.

    Raises:
        ValueError: a negative quantity.
    """
    need = sum(demands)
    if available >= need:
        if any(d < 0 for d in demands):
            raise ValueError("negative demand")
        return list(demands)
    return apportion(available, demands)


def money(micro: int) -> int:
    """Round an exact amount in 10^-6 minor units to minor units, half away from zero."""
    if micro >= 0:
        return (micro + MICRO // 2) // MICRO
    return -((-micro + MICRO // 2) // MICRO)
