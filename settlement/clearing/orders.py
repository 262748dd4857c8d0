"""Orders, grid fees, trades and the merit order shared by the clearing mechanisms.

Prices are integers in minor currency units per MWh (12.5 ct/kWh = 12500 cent/MWh
with cents as minor unit). A trade at price ``t`` costs the buyer ``t``; the grid
fee ``fee(t)`` is taken from it and the seller receives ``t - fee(t)`` (as in Grid
Singularity's exchange, where the fee is carried inside the traded price). A fee is
a constant per MWh or a percentage of the trade price in basis points, rounded half
up to a whole minor unit per MWh.

Merit order (the stated, deterministic tie order): bids by price descending, then
member id, then position in the input; offers by their *effective* price ascending
(the lowest trade price at which the seller still receives its limit), then member
id, then position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

FEE_KINDS = ("per_mwh", "percent_bp")


@dataclass(frozen=True)
class Fee:
    """A grid fee: ``kind`` ``"per_mwh"`` (``value`` minor units per MWh) or
    ``"percent_bp"`` (``value`` basis points of the trade price, 0..9999)."""

    kind: str = "per_mwh"
    value: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FEE_KINDS:
            raise ValueError(f"fee kind must be one of {FEE_KINDS}, got {self.kind!r}")
        if self.value < 0 or (self.kind == "percent_bp" and self.value >= 10_000):
            raise ValueError(f"fee value out of range: {self.value}")

    def of(self, price: int) -> int:
        """The fee per MWh carried in a trade at ``price`` per MWh."""
        if self.kind == "per_mwh":
            return self.value
        return (price * self.value + 5_000) // 10_000

    def effective(self, limit: int) -> int:
        """The lowest trade price ``t`` with ``t - fee(t) >= limit``."""
        if self.kind == "per_mwh":
            return limit + self.value
        t = -(-limit * 10_000 // (10_000 - self.value))  # ceil, then adjust for rounding
        while t - self.of(t) < limit:
            t += 1
        while t > limit and (t - 1) - self.of(t - 1) >= limit:
            t -= 1
        return t


class Order(NamedTuple):
    """A bid or offer of ``member`` (an index into the interval's consumers for bids,
    producers for offers; indexes follow member-id order) for ``wh`` at ``price``."""

    member: int
    wh: int
    price: int


class Trade(NamedTuple):
    """``wh`` from offer ``offer`` to bid ``bid`` (positions in the input lists) at
    ``price`` per MWh, of which ``fee`` per MWh is the grid fee."""

    bid: int
    offer: int
    wh: int
    price: int
    fee: int


def merit_order(bids: Sequence[Order], offers: Sequence[Order], fee: Fee
                ) -> tuple[list[int], list[tuple[int, int]]]:
    """Bid positions in merit order, and ``(offer position, effective price)`` likewise."""
    b = sorted((i for i, o in enumerate(bids) if o.wh > 0),
               key=lambda i: (-bids[i].price, bids[i].member, i))
    eff = [(i, fee.effective(o.price)) for i, o in enumerate(offers) if o.wh > 0]
    eff.sort(key=lambda e: (e[1], offers[e[0]].member, e[0]))
    return b, eff


def match(bids: Sequence[Order], offers: Sequence[Order], fee: Fee
          ) -> list[tuple[int, int, int, int]]:
    """Walk both merit orders while the best bid covers the best offer's effective price.

    Returns ``(bid, offer, wh, offer's effective price)`` per match, in order.
    """
    border, oorder = merit_order(bids, offers, fee)
    rb = [o.wh for o in bids]
    ro = [o.wh for o in offers]
    out = []
    bi = oi = 0
    while bi < len(border) and oi < len(oorder):
        b = border[bi]
        o, eff = oorder[oi]
        if bids[b].price < eff:
            break
        q = min(rb[b], ro[o])
        out.append((b, o, q, eff))
        rb[b] -= q
        ro[o] -= q
        if not rb[b]:
            bi += 1
        if not ro[o]:
            oi += 1
    return out
