"""Two-sided pay-as-clear: one price for every trade of the interval.

The merit orders are matched as in pay-as-bid; the clearing price is the effective
price of the last (marginal) offer matched, where the falling demand curve crosses
the rising supply curve. Every matched bid is at or above it and every matched
offer's seller receives at least its limit, so no one trades against its limit.
"""

from __future__ import annotations

from collections.abc import Sequence

from settlement.clearing.orders import Fee, Order, Trade, match


def clear(bids: Sequence[Order], offers: Sequence[Order], fee: Fee) -> list[Trade]:
    matches = match(bids, offers, fee)
    if not matches:
        return []
    price = matches[-1][3]
    f = fee.of(price)
    return [Trade(b, o, q, price, f) for b, o, q, _eff in matches]
