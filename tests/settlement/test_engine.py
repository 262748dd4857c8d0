"""The period engine: lines per member and interval, EDA channels, money, provisional."""

from __future__ import annotations

import pytest

from settlement.build import make_body
from settlement.engine import TOTAL_FIELDS, run
from settlement.errors import InputError
from settlement.source import IntervalData

from .conftest import small

MODES = ["pro_rata", "static_keys", "static_keys_redistributed", "priority_cascade",
         "coefficient_schedule", "market"]


def _interval_lines(lines: list[str]) -> list[list[str]]:
    return [ln.split(",") for ln in lines if ln.startswith("I,")]


@pytest.mark.parametrize("mode", MODES)
def test_channels_conserve_energy_in_every_interval(mode: str) -> None:
    c, period, data = small(mode)
    r = run(c, period, data)
    rows = {m: _interval_lines(r.lines[m]) for m in r.members}
    assert all(len(v) == 96 for v in rows.values())
    for k in range(96):
        covered = generated = surplus = 0
        for m in r.members:
            f = rows[m][k]
            use, al, cov, gen, sur, cs, imp, exp = map(int, f[5:13])
            assert 0 <= cov <= min(use, al) and imp == use - cov and exp == sur
            assert 0 <= cs <= sur <= gen
            covered, generated, surplus = covered + cov, generated + gen, surplus + sur
        assert covered == generated - surplus
    assert sum(r.totals[m]["covered"] for m in r.members) > 0


@pytest.mark.parametrize("mode", MODES)
def test_money_is_conserved_between_members(mode: str) -> None:
    c, period, data = small(mode)
    r = run(c, period, data)
    paid = sum(r.totals[m]["paid"] for m in r.members)
    fees = sum(r.totals[m]["fees"] for m in r.members)
    received = sum(r.totals[m]["received"] for m in r.members)
    assert paid - fees == received and paid > 0
    # every counterparty line appears once on each side with the same amounts
    bought = sorted((ln.split(",")[2], ln.split(",")[1], ln.split(",")[4:])
                    for m in r.members for ln in r.lines[m] if ln.startswith("C,") and
                    ln.split(",")[3] == "B")
    sold = sorted((ln.split(",")[1], ln.split(",")[2], ln.split(",")[4:])
                  for m in r.members for ln in r.lines[m] if ln.startswith("C,") and
                  ln.split(",")[3] == "S")
    assert bought == sold
    cov = sum(r.totals[m]["covered"] for m in r.members)
    assert sum(int(b[2][0]) for b in bought) == cov


def test_same_inputs_same_lines_and_root() -> None:
    a = run(*small("static_keys_redistributed"))
    b = run(*small("static_keys_redistributed"))
    assert a.lines == b.lines
    key = bytes(32)
    assert make_body(a, [], key) == make_body(b, [], key)


def test_non_measured_input_makes_the_interval_provisional_for_everyone() -> None:
    c, period, data = small("pro_rata", estimated_every=40)
    r = run(c, period, data)
    rows = {m: _interval_lines(r.lines[m]) for m in r.members}
    prov = [k for k in range(96) if rows[r.members[0]][k][4] == "1"]
    assert prov and len(prov) < 96
    for m in r.members:
        assert [k for k in range(96) if rows[m][k][4] == "1"] == prov
        assert r.totals[m]["provisional_intervals"] == len(prov)
    estimated = {(m, k) for m in r.members for k in range(96) if rows[m][k][3] == "E"}
    assert estimated and all(k in prov for _, k in estimated)


def test_missing_point_counts_as_missing_and_zero() -> None:
    c, period, data = small("pro_rata")
    points = dict(data.points)
    del points["m0003-c"]
    r = run(c, period, IntervalData(data.interval_ms, points, data.sources))
    rows = _interval_lines(r.lines["m0003"])
    assert {f[3] for f in rows} == {"X"} and {f[5] for f in rows} == {"0"}
    assert all(f[4] == "1" for f in rows)


def test_interval_length_must_match() -> None:
    c, period, data = small()
    with pytest.raises(InputError, match="intervals"):
        run(c, period, IntervalData(300_000, data.points, data.sources))


def test_totals_line_matches_the_interval_lines() -> None:
    c, period, data = small("static_keys", unused="community")
    r = run(c, period, data)
    for m in r.members:
        rows = _interval_lines(r.lines[m])
        t = r.totals[m]
        for i, name in enumerate(TOTAL_FIELDS[:8]):
            assert t[name] == sum(int(f[5 + i]) for f in rows), (m, name)
        assert r.lines[m][-1] == "T," + m + "," + ",".join(str(t[f]) for f in TOTAL_FIELDS)
    assert sum(r.totals[m]["community_surplus"] for m in r.members) > 0


def test_hour_of_year_counts_elapsed_hours_across_a_dst_change() -> None:
    # 2026-03-29 in Vienna has 23 hours: 2088 hours after 1 January 00:00 local the day
    # starts, and its last hour is hour 2110 (not 2111, as local clock hours would say)
    from settlement.config import parse_community
    from settlement.period import parse_period
    from settlement.synthetic import community_toml, intervals
    data = community_toml(3, 1, mode="coefficient_schedule", time_zone="Europe/Vienna")
    data["sharing"]["coefficients"] = [
        {"first": 2110, "end": 2111, "producer": "*", "member": "m0001", "weight": 1}]
    c = parse_community(data)
    period = parse_period("2026-03-29", c.time_zone)
    assert period.end_ms - period.start_ms == 23 * 3_600_000
    d = intervals(3, 1, period.start_ms, 92)
    d.points["m0000-g"].update({t: (500, 0) for t in d.points["m0000-g"]})  # type: ignore[attr-defined]
    r = run(c, period, d)
    got = [int(f[6]) > 0 for f in _interval_lines(r.lines["m0001"])]
    assert got == [False] * 88 + [True] * 4


def test_market_orders_from_the_input_are_used_and_checked() -> None:
    from settlement.source import MarketOrder
    c, period, data = small("market")
    t = period.start_ms + 48 * 900_000  # noon
    orders = (MarketOrder(t, "m0003", "bid", 50, 40_000),
              MarketOrder(t, "m0000", "offer", 10_000, 1_000))
    r = run(c, period, IntervalData(data.interval_ms, data.points, data.sources, orders))
    noon = [_interval_lines(r.lines[m])[48] for m in r.members]
    allocated = {f[1]: int(f[6]) for f in noon}
    assert allocated["m0003"] == 50 and sum(allocated.values()) == 50
    bad = (MarketOrder(t, "nobody", "bid", 50, 40_000),)
    with pytest.raises(InputError, match="cannot bid"):
        run(c, period, IntervalData(data.interval_ms, data.points, data.sources, bad))
