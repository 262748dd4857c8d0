"""Two-sided pay-as-bid: every match trades at the bid's price.

Bids in descending and offers in ascending merit order are matched while the bid's
price reaches the offer's effective price; the buyer pays its own bid, the seller
receives it less the grid fee (which is at least the seller's limit).
"""

from __future__ import annotations

from collections.abc import Sequence

from settlement.clearing.orders import Fee, Order, Trade, match


def clear(bids: Sequence[Order], offers: Sequence[Order], fee: Fee) -> list[Trade]:
    return [Trade(b, o, q, bids[b].price, fee.of(bids[b].price))
            for b, o, q, _eff in match(bids, offers, fee)]
