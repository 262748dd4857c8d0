"""Two-sided pay-as-bid and pay-as-clear, grid fees, settlement on measured energy."""

from __future__ import annotations

from settlement.allocation import IntervalInput, check
from settlement.clearing import pay_as_bid, pay_as_clear
from settlement.clearing.orders import Fee, Order
from settlement.rules.market import Market

NO_FEE = Fee()


def test_pay_as_bid_matches_best_bid_with_cheapest_offer_at_the_bid_price() -> None:
    bids = [Order(0, 100, 20_000), Order(1, 100, 30_000), Order(2, 100, 5_000)]
    offers = [Order(0, 150, 10_000), Order(1, 100, 8_000)]
    trades = pay_as_bid.clear(bids, offers, NO_FEE)
    # bid 1 (30000) meets offer 1 (8000), bid 0 (20000) meets offer 0 (10000); bid 2 is
    # below every offer
    assert [(t.bid, t.offer, t.wh, t.price) for t in trades] == [
        (1, 1, 100, 30_000), (0, 0, 100, 20_000)]


def test_pay_as_clear_trades_everything_at_the_marginal_offer() -> None:
    bids = [Order(0, 100, 20_000), Order(1, 100, 30_000), Order(2, 100, 9_000)]
    offers = [Order(0, 150, 10_000), Order(1, 100, 8_000)]
    trades = pay_as_clear.clear(bids, offers, NO_FEE)
    assert [(t.bid, t.offer, t.wh) for t in trades] == [(1, 1, 100), (0, 0, 100)]
    assert {t.price for t in trades} == {10_000}


def test_ties_go_by_member_id_then_input_order() -> None:
    bids = [Order(2, 50, 20_000), Order(1, 50, 20_000), Order(1, 50, 20_000)]
    offers = [Order(0, 60, 10_000)]
    trades = pay_as_bid.clear(bids, offers, NO_FEE)
    assert [(t.bid, t.wh) for t in trades] == [(1, 50), (2, 10)]


def test_grid_fee_is_carried_in_the_price_and_can_block_a_trade() -> None:
    bids = [Order(0, 100, 10_400)]
    offers = [Order(0, 100, 10_000)]
    assert pay_as_bid.clear(bids, offers, Fee("per_mwh", 500)) == []
    t = pay_as_bid.clear(bids, offers, Fee("per_mwh", 400))[0]
    assert (t.price, t.fee) == (10_400, 400)
    t = pay_as_clear.clear([Order(0, 100, 12_000)], offers, Fee("percent_bp", 1000))[0]
    # the least price that leaves the seller its 10000: 11111 - round(1111.1) = 10000
    assert (t.price, t.fee) == (11_111, 1_111)


def test_settles_the_smaller_of_contracted_and_delivered_pro_rata() -> None:
    # two buyers each contracted 10 kWh from one seller who delivered 15 kWh
    iv = IntervalInput(0, 0, ("a", "b"), (10_000, 10_000), ("pv",), (15_000,),
                       bids=(Order(0, 10_000, 20_000), Order(1, 10_000, 20_000)),
                       offers=(Order(0, 20_000, 10_000),))
    a = Market(mechanism="pay_as_clear").allocate(iv)
    check(iv, a)
    assert a.allocated == (10_000, 10_000)
    assert a.covered == (7_500, 7_500) and a.used == (15_000,)


def test_buyer_that_used_less_than_it_bought_settles_its_use() -> None:
    iv = IntervalInput(0, 0, ("a",), (4_000,), ("p1", "p2"), (6_000, 6_000),
                       bids=(Order(0, 10_000, 20_000),),
                       offers=(Order(0, 5_000, 9_000), Order(1, 5_000, 10_000)))
    a = Market(mechanism="pay_as_bid").allocate(iv)
    check(iv, a)
    assert a.allocated == (10_000,) and a.covered == (4_000,)
    assert a.used == (2_000, 2_000)


def test_orders_from_measurement_and_limits() -> None:
    iv = IntervalInput(0, 0, ("a", "b"), (3_000, 1_000), ("pv",), (2_000,))
    m = Market(mechanism="pay_as_clear", bid_limits={"a": 15_000, "b": 25_000},
               offer_limits={"pv": 8_000})
    a = m.allocate(iv)
    check(iv, a)
    assert a.covered == (1_000, 1_000)  # b bids higher and is served first
    assert {f.price for f in a.flows} == {8_000}
