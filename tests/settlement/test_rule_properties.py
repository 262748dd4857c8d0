"""Invariants of every sharing rule and market, as hypothesis properties.

In every interval: covered <= consumption; covered <= allocated; every covered Wh is
attributed to exactly one producer; sum covered = sum generated - surplus (nothing
created or lost); the same inputs give the same allocation.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.allocation import Allocation, IntervalInput, check
from settlement.attribution import PoolAttribution
from settlement.clearing.orders import Fee, Order
from settlement.rounding import apportion, capped_pro_rata, money

from .rules_util import make_rule

IDS = ["a", "b", "c", "d", "e", "f", "g"]
wh = st.integers(min_value=0, max_value=50_000)


@st.composite
def intervals(draw: Any) -> IntervalInput:
    consumers = sorted(draw(st.sets(st.sampled_from(IDS), min_size=1, max_size=6)))
    producers = sorted(draw(st.sets(st.sampled_from(["p1", "p2", "p3", "a"]), min_size=1,
                                    max_size=3)))
    return IntervalInput(draw(st.integers(0, 3000)), draw(st.integers(0, 8783)),
                         tuple(consumers), tuple(draw(wh) for _ in consumers),
                         tuple(producers), tuple(draw(wh) for _ in producers))


weights = st.dictionaries(st.sampled_from(IDS), st.integers(0, 100), max_size=7)
unused = st.sampled_from(["producer", "community"])


@st.composite
def rules(draw: Any) -> Any:
    name = draw(st.sampled_from(["pro_rata", "static_keys", "static_keys_redistributed",
                                 "priority_cascade", "coefficient_schedule", "market"]))
    if name == "pro_rata":
        return make_rule(name, {})
    if name in ("static_keys", "static_keys_redistributed"):
        return make_rule(name, {"keys": draw(weights), "unused": draw(unused)})
    if name == "priority_cascade":
        return make_rule(name, {"priorities": draw(st.dictionaries(
            st.sampled_from(IDS), st.integers(0, 3), max_size=7))})
    if name == "coefficient_schedule":
        coeffs = draw(st.lists(st.fixed_dictionaries({
            "first": st.integers(0, 10), "end": st.integers(0, 20),
            "producer": st.sampled_from(["*", "p1", "p2", "a"]),
            "member": st.sampled_from(IDS), "weight": st.integers(0, 10)}), max_size=8))
        return make_rule(name, {"coefficients": coeffs, "unused": draw(unused),
                                "slot": draw(st.sampled_from(["hour_of_year", "interval"]))})
    fee = draw(st.one_of(
        st.builds(lambda v: {"kind": "per_mwh", "value": v}, st.integers(0, 5000)),
        st.builds(lambda v: {"kind": "percent_bp", "value": v}, st.integers(0, 9999))))
    prices = st.dictionaries(st.sampled_from(IDS + ["p1", "p2", "p3"]),
                             st.integers(0, 40_000), max_size=10)
    return make_rule(name, {"mechanism": draw(st.sampled_from(["pay_as_bid", "pay_as_clear"])),
                            "fee": fee, "bid_limits": draw(prices),
                            "offer_limits": draw(prices)})


def _conserves(iv: IntervalInput, a: Allocation) -> None:
    check(iv, a)
    surplus = sum(iv.generation) - sum(a.used)
    assert sum(a.covered) == sum(iv.generation) - surplus
    if a.flows is not None:
        assert sum(f.wh for f in a.flows) == sum(a.covered)
    assert all(0 <= v <= c for v, c in zip(a.covered, iv.consumption, strict=True))
    assert all(v <= al for v, al in zip(a.covered, a.allocated, strict=True))


@settings(max_examples=200, deadline=None)
@given(rules(), intervals())
def test_every_rule_keeps_the_invariants_and_is_deterministic(rule: Any,
                                                              iv: IntervalInput) -> None:
    a = rule.allocate(iv)
    _conserves(iv, a)
    assert rule.allocate(iv) == a


@settings(max_examples=200, deadline=None)
@given(intervals())
def test_pro_rata_covers_everyone_or_uses_everything(iv: IntervalInput) -> None:
    a = make_rule("pro_rata", {}).allocate(iv)
    if sum(iv.generation) >= sum(iv.consumption):
        assert a.covered == iv.consumption
    else:
        assert sum(a.covered) == sum(iv.generation)
        # each share within one Wh of the exact C_i * G / sum C
        g, need = sum(iv.generation), sum(iv.consumption)
        assert all(abs(v * need - c * g) < need for v, c in
                   zip(a.covered, iv.consumption, strict=True))


@settings(max_examples=200, deadline=None)
@given(weights, intervals())
def test_redistribution_never_covers_less_than_static_keys(keys: dict[str, int],
                                                           iv: IntervalInput) -> None:
    static = make_rule("static_keys", {"keys": keys}).allocate(iv)
    filled = make_rule("static_keys_redistributed", {"keys": keys}).allocate(iv)
    assert sum(filled.covered) >= sum(static.covered)
    # water-filling stops only when nothing is left or all keyed members are covered
    keyed_open = [j for j, m in enumerate(iv.consumers)
                  if keys.get(m, 0) and filled.covered[j] < iv.consumption[j]]
    assert sum(filled.used) == sum(iv.generation) or not keyed_open


@given(st.integers(0, 10**9), st.lists(st.integers(0, 10**6), min_size=1, max_size=20))
def test_apportion_sums_exactly_and_stays_within_one_of_the_exact_share(
        total: int, ws: list[int]) -> None:
    if sum(ws) == 0:
        return
    parts = apportion(total, ws)
    assert sum(parts) == total
    w = sum(ws)
    assert all(abs(p * w - total * x) < w for p, x in zip(parts, ws, strict=True))
    assert all(p == 0 for p, x in zip(parts, ws, strict=True) if x == 0)


def test_apportion_ties_go_to_the_smaller_id() -> None:
    assert apportion(1, [1, 1, 1]) == [1, 0, 0]
    assert apportion(2, [1, 1, 1]) == [1, 1, 0]
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]


@given(st.integers(0, 10**7), st.lists(wh, min_size=1, max_size=10))
def test_capped_pro_rata_caps(available: int, demands: list[int]) -> None:
    parts = capped_pro_rata(available, demands)
    assert all(0 <= p <= d for p, d in zip(parts, demands, strict=True))
    assert sum(parts) == min(available, sum(demands))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.integers(1, 4), st.data())
def test_pool_attribution_has_exact_margins_and_stays_near_the_exact_shares(
        n: int, p: int, data: Any) -> None:
    pool = PoolAttribution(n, p, 50_000, 20)
    exact = [[Fraction(0)] * n for _ in range(p)]
    for _ in range(data.draw(st.integers(0, 20))):  # at most 20 intervals
        covered = data.draw(st.lists(wh, min_size=n, max_size=n))
        total = sum(covered)
        weights = data.draw(st.lists(st.integers(0, 100), min_size=p, max_size=p))
        if not sum(weights):
            weights[0] = 1
        used = apportion(total, weights)
        pool.add(covered, used)
        for i in range(p):
            for j in range(n):
                if total:
                    exact[i][j] += Fraction(covered[j] * used[i], total)
    got = pool.pairs()
    for i in range(p):
        assert sum(got.get((i, j), 0) for j in range(n)) == pool.rows[i]
    for j in range(n):
        assert sum(got.get((i, j), 0) for i in range(p)) == pool.columns[j]
    assert all(v > 0 for v in got.values())
    # a pair's floor is at most 1 Wh (plus the fixed-point error, under 1 Wh over 20
    # intervals) below its exact share, and the corner rule adds at most the row's
    # total shortfall, which is under n + 1 Wh
    for i in range(p):
        for j in range(n):
            assert exact[i][j] - 2 <= got.get((i, j), 0) <= exact[i][j] + n + 2


def test_money_rounds_half_away_from_zero() -> None:
    assert money(499_999) == 0 and money(500_000) == 1 and money(1_500_000) == 2
    assert money(-500_000) == -1 and money(-499_999) == 0


def test_fee_effective_price_is_the_least_that_pays_the_seller() -> None:
    for fee in (Fee("per_mwh", 1500), Fee("percent_bp", 1250), Fee("percent_bp", 1)):
        for limit in range(0, 3000, 7):
            t = fee.effective(limit)
            assert t - fee.of(t) >= limit
            assert t == 0 or (t - 1) - fee.of(t - 1) < limit


@st.composite
def market_intervals(draw: Any) -> IntervalInput:
    iv = draw(intervals())
    nc, np_ = len(iv.consumers), len(iv.producers)
    order = st.tuples(st.integers(0, 50_000), st.integers(0, 40_000))
    bids = tuple(Order(draw(st.integers(0, nc - 1)), wh, price)
                 for wh, price in draw(st.lists(order, max_size=8)))
    offers = tuple(Order(draw(st.integers(0, np_ - 1)), wh, price)
                   for wh, price in draw(st.lists(order, max_size=6)))
    return IntervalInput(iv.index, iv.hour_of_year, iv.consumers, iv.consumption,
                         iv.producers, iv.generation, bids, offers)


@settings(max_examples=200, deadline=None)
@given(market_intervals(), st.sampled_from(["pay_as_bid", "pay_as_clear"]),
       st.sampled_from([Fee(), Fee("per_mwh", 1500), Fee("percent_bp", 800)]))
def test_market_with_given_orders_settles_no_more_than_contracted_or_delivered(
        iv: IntervalInput, mechanism: str, fee: Fee) -> None:
    from settlement.rules.market import Market
    a = Market(mechanism=mechanism, fee=fee).allocate(iv)
    _conserves(iv, a)
    assert a.flows is not None
    bought = [0] * len(iv.consumers)
    for b in iv.bids or ():
        bought[b.member] += b.wh
    assert all(al <= b for al, b in zip(a.allocated, bought, strict=True))
    for f in a.flows:
        assert f.price is not None and f.fee is not None and f.price - f.fee >= 0
    if mechanism == "pay_as_clear":
        assert len({f.price for f in a.flows}) <= 1
