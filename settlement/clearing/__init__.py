"""Two-sided clearing of one interval's bids and offers: one module per mechanism.

Every mechanism is ``clear(bids, offers, fee) -> list[Trade]`` over the orders of
one interval (:mod:`settlement.clearing.orders`), pure and stateless.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from settlement.clearing.orders import Fee, Order, Trade

Mechanism = Callable[[Sequence[Order], Sequence[Order], Fee], list[Trade]]


def mechanisms() -> dict[str, Mechanism]:
    """Name (as in ``community.toml``) -> clearing function."""
    from settlement.clearing import pay_as_bid, pay_as_clear
    return {"pay_as_bid": pay_as_bid.clear, "pay_as_clear": pay_as_clear.clear}
