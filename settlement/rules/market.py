"""Local market: bids and offers per interval, cleared two-sided, settled on measurement.

Orders are the interval's given ``bids``/``offers`` or, when none were given, one
bid per consumer for its measured consumption at its price limit and one offer per
producer for its measured generation at its limit (members without a limit do not
trade). A clearing mechanism (:mod:`settlement.clearing`) gives contracted trades.

Settled on measured energy: a trade settles ``min(contracted, delivered)``. When a
seller generated less than it sold, its trades are cut to its generation in
proportion to their quantities (largest remainder, trades ordered by buyer id then
trade order); then, when a buyer consumed less than it bought, its trades are cut to
its consumption likewise (ordered by seller id then trade order). G.02 is a buyer's
contracted energy, G.03 its settled energy; unsold generation is surplus, back to
the producer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from settlement.allocation import Allocation, Flow, IntervalInput
from settlement.clearing import mechanisms
from settlement.clearing.orders import Fee, Order, Trade
from settlement.rounding import apportion
from settlement.rules import register


def _cut(settled: list[int], ks: list[int], limit: int) -> None:
    """Cut the trades ``ks`` (already in tie order) to ``limit`` in total, pro rata."""
    if sum(settled[k] for k in ks) > limit:
        for k, x in zip(ks, apportion(limit, [settled[k] for k in ks]), strict=True):
            settled[k] = x


def settle_on_delivery(trades: list[Trade], bids: tuple[Order, ...],
                       offers: tuple[Order, ...], consumption: tuple[int, ...],
                       generation: tuple[int, ...]) -> list[int]:
    """Settled Wh per trade: cut pro rata to each seller's, then each buyer's, delivery."""
    settled = [t.wh for t in trades]
    sellers: dict[int, list[int]] = {}
    buyers: dict[int, list[int]] = {}
    for k, t in enumerate(trades):
        sellers.setdefault(offers[t.offer].member, []).append(k)
        buyers.setdefault(bids[t.bid].member, []).append(k)
    for p, ks in sellers.items():
        ks.sort(key=lambda k: (bids[trades[k].bid].member, k))
        _cut(settled, ks, generation[p])
    for j, ks in buyers.items():
        ks.sort(key=lambda k: (offers[trades[k].offer].member, k))
        _cut(settled, ks, consumption[j])
    return settled


@register
@dataclass(frozen=True)
class Market:
    """``mechanism``: ``"pay_as_bid"`` or ``"pay_as_clear"``; ``fee``: grid fee;
    ``bid_limits``/``offer_limits``: member id -> price limit (minor units per MWh)."""

    mechanism: str = "pay_as_clear"
    fee: Fee = field(default_factory=Fee)
    bid_limits: Mapping[str, int] = field(default_factory=dict)
    offer_limits: Mapping[str, int] = field(default_factory=dict)

    NAME = "market"
    VERSION = 1

    def orders(self, interval: IntervalInput) -> tuple[tuple[Order, ...], tuple[Order, ...]]:
        """The interval's bids and offers (given, or derived from measurement)."""
        if interval.bids is not None and interval.offers is not None:
            return interval.bids, interval.offers
        bids = tuple(Order(j, c, self.bid_limits[m]) for j, (m, c) in
                     enumerate(zip(interval.consumers, interval.consumption, strict=True))
                     if c and m in self.bid_limits)
        offers = tuple(Order(p, g, self.offer_limits[m]) for p, (m, g) in
                       enumerate(zip(interval.producers, interval.generation, strict=True))
                       if g and m in self.offer_limits)
        return bids, offers

    def allocate(self, interval: IntervalInput) -> Allocation:
        bids, offers = self.orders(interval)
        trades = mechanisms()[self.mechanism](bids, offers, self.fee)
        settled = settle_on_delivery(trades, bids, offers, interval.consumption,
                                     interval.generation)
        nc, np_ = len(interval.consumers), len(interval.producers)
        allocated = [0] * nc
        covered = [0] * nc
        used = [0] * np_
        flows = []
        for t, s in zip(trades, settled, strict=True):
            j, p = bids[t.bid].member, offers[t.offer].member
            allocated[j] += t.wh
            if s:
                covered[j] += s
                used[p] += s
                flows.append(Flow(p, j, s, t.price, t.fee))
        return Allocation(tuple(allocated), tuple(covered), tuple(used), (0,) * np_,
                          tuple(flows))
