"""Run a sharing rule over a period: interval energy + community -> output lines.

For every interval of the period the engine sums each member's metering points,
asks the rule for the allocation (checking its invariants), and writes one output
line per member; over the period it adds up who covered whom and prices it. The
result is a :class:`Result`: per member the lines that its part of the settlement
document commits to (``docs/settlement.md`` section 3 defines each line), and the
totals. Pure: no file, clock or socket.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import sub

from settlement.allocation import IntervalInput, check
from settlement.attribution import PoolAttribution
from settlement.clearing.orders import Order
from settlement.config import Community
from settlement.errors import InputError
from settlement.gcpause import collector_paused
from settlement.period import Period, year_start_ms
from settlement.rounding import money
from settlement.rules import Rule, load_all
from settlement.rules.schedule import CoefficientSchedule
from settlement.source import MEASURED, MISSING, QUALITY_LETTERS, IntervalData

ENGINE_VERSION = 1

TOTAL_FIELDS = ("use", "allocated", "covered", "generation", "surplus", "community_surplus",
                "grid_import", "grid_export", "paid", "fees", "received", "import_amount",
                "export_amount", "community_export_amount", "provisional_intervals")
"""Fields of a member's ``T`` line after the member id, in order."""


def build_rule(c: Community) -> Rule:
    """The rule instance ``community.toml`` asks for."""
    rules = load_all()
    s = c.sharing
    mode = s.mode
    if mode == "pro_rata":
        return rules[mode]()
    if mode in ("static_keys", "static_keys_redistributed"):
        return rules[mode](keys={m.id: m.key for m in c.members if m.key},
                           unused=s.unused)
    if mode == "priority_cascade":
        return rules[mode](priorities={m.id: m.priority for m in c.members
                                       if m.priority is not None})
    if mode == "coefficient_schedule":
        return CoefficientSchedule(coefficients=s.coefficients, slot=s.slot, unused=s.unused)
    return rules["market"](
        mechanism=s.mechanism, fee=c.prices.grid_fee,
        bid_limits={m.id: m.bid_limit for m in c.members if m.bid_limit is not None},
        offer_limits={m.id: m.offer_limit for m in c.members if m.offer_limit is not None})


class Lines(Mapping[str, list[str]]):
    """Member -> its output lines, kept as one newline-joined text per member.

    A month of 15-minute lines is millions of short strings; one text per member
    takes a fraction of the memory, and a member's list is made when asked for.
    """

    def __init__(self, texts: dict[str, str]) -> None:
        self._texts = texts

    def __getitem__(self, member: str) -> list[str]:
        return self._texts[member].split("\n")

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)

    def encoded(self, member: str) -> list[bytes]:
        """``member``'s lines as ASCII bytes (one encode for all of them)."""
        return self._texts[member].encode("ascii").split(b"\n")

    def count(self, member: str) -> int:
        """How many lines ``member`` has."""
        return self._texts[member].count("\n") + 1


@dataclass(frozen=True)
class Result:
    """A computed settlement: per member (sorted by id) its lines and totals."""

    community: Community
    period: Period
    rule: Rule
    members: tuple[str, ...]
    lines: Lines
    totals: dict[str, dict[str, int]]


def _column(data: IntervalData, points: tuple[str, ...], ts: range
            ) -> tuple[list[int], list[int]]:
    """A member's Wh and worst quality per interval, summed over its points."""
    missing = (0, MISSING)
    if not points:
        return [0] * len(ts), [MEASURED] * len(ts)
    d = data.points.get(points[0], {})
    vals = list(map(d.get, ts, repeat(missing)))
    wh = [v[0] for v in vals]
    q = [v[1] if v[1] > MEASURED else MEASURED for v in vals]
    for point in points[1:]:
        d = data.points.get(point, {})
        vals = list(map(d.get, ts, repeat(missing)))
        wh = [a + v[0] for a, v in zip(wh, vals, strict=True)]
        q = [a if a >= v[1] else v[1] for a, v in zip(q, vals, strict=True)]
    return wh, q


def _orders(data: IntervalData, t: int, consumers: tuple[str, ...],
            producers: tuple[str, ...]) -> tuple[tuple[Order, ...], tuple[Order, ...]] | None:
    given = [o for o in data.orders if o.start_ms == t]
    if not given:
        return None
    cidx = {m: j for j, m in enumerate(consumers)}
    pidx = {m: p for p, m in enumerate(producers)}
    bids: list[Order] = []
    offers: list[Order] = []
    for o in given:
        table = cidx if o.side == "bid" else pidx
        if o.member not in table:
            raise InputError(f"order at {t}: {o.member!r} cannot {o.side} (no "
                             f"{'consumption' if o.side == 'bid' else 'generation'} point)")
        (bids if o.side == "bid" else offers).append(Order(table[o.member], o.wh, o.price))
    return tuple(bids), tuple(offers)


@dataclass
class _Period:
    """What the interval loop produces: per-interval rows and pair totals."""

    alloc: list[tuple[int, ...]]
    covered: list[tuple[int, ...]]
    used: list[tuple[int, ...]]
    to_community: list[tuple[int, ...]]
    pairs: dict[tuple[int, int], list[int]]  # (producer, consumer) -> [wh, value, fee]


def _allocate(c: Community, rule: Rule, period: Period, data: IntervalData,
              use_rows: list[tuple[int, ...]], gen_rows: list[tuple[int, ...]]) -> _Period:
    """Run the rule on every interval, check it, and add up who covered whom."""
    consumers, producers = c.consumers, c.producers
    ts = range(period.start_ms, period.end_ms, c.interval_ms)
    out = _Period([], [], [], [], {})
    pool = PoolAttribution(len(consumers), len(producers),
                           max((max(r) for r in use_rows if r), default=0), len(ts))
    price = c.prices.community
    fee = c.prices.grid_fee.of(price)
    # hour of the year: whole hours elapsed since 1 January 00:00 local time
    year0 = year_start_ms(period.start_ms, c.time_zone)
    next_year = year_start_ms(year0 + 367 * 86_400_000, c.time_zone)
    for k, t in enumerate(ts):
        if t >= next_year:
            year0, next_year = next_year, year_start_ms(next_year + 367 * 86_400_000,
                                                        c.time_zone)
        orders = _orders(data, t, consumers, producers) if data.orders else None
        iv = IntervalInput(k, (t - year0) // 3_600_000, consumers, use_rows[k], producers,
                           gen_rows[k], orders[0] if orders else None,
                           orders[1] if orders else None)
        a = rule.allocate(iv)
        check(iv, a)
        out.alloc.append(a.allocated)
        out.covered.append(a.covered)
        out.used.append(a.used)
        out.to_community.append(a.to_community)
        if a.flows is None:
            pool.add(a.covered, a.used)
            continue
        for f in a.flows:
            slot = out.pairs.setdefault((f.producer, f.consumer), [0, 0, 0])
            slot[0] += f.wh
            slot[1] += f.wh * (price if f.price is None else f.price)
            slot[2] += f.wh * (fee if f.fee is None else f.fee)
    for pair, wh in pool.pairs().items():
        slot = out.pairs.setdefault(pair, [0, 0, 0])
        slot[0] += wh
        slot[1] += wh * price
        slot[2] += wh * fee
    return out


def run(c: Community, period: Period, data: IntervalData) -> Result:
    """Settle ``period`` from ``data`` under ``c``'s rule and prices.

    Raises:
        InputError: the data's interval length differs from the community's, or an
            order names a member that cannot trade.
        SettlementError: a rule broke an invariant (a bug, never silently kept).
    """
    if data.interval_ms != c.interval_ms:
        raise InputError(f"interval energy is in {data.interval_ms} ms intervals, the "
                         f"community settles {c.interval_ms} ms")
    with collector_paused():  # nothing built here forms a cycle (settlement/gcpause.py)
        return _run(c, period, data)


def _run(c: Community, period: Period, data: IntervalData) -> Result:
    """:func:`run` after its input check (raises as it does)."""
    rule = build_rule(c)
    consumers, producers = c.consumers, c.producers
    members = tuple(sorted(m.id for m in c.members))
    ts = range(period.start_ms, period.end_ms, c.interval_ms)
    n_t = len(ts)
    ccols = [_column(data, c.member(m).consumption, ts) for m in consumers]
    gcols = [_column(data, c.member(m).generation, ts) for m in producers]
    use_rows = list(zip(*(col[0] for col in ccols), strict=True)) or [()] * n_t
    gen_rows = list(zip(*(col[0] for col in gcols), strict=True)) or [()] * n_t
    worst = [max(qs) for qs in zip(*(col[1] for col in ccols + gcols), strict=True)]
    prov_col = [int(q != MEASURED) for q in worst]
    got = _allocate(c, rule, period, data, use_rows, gen_rows)
    alloc_cols = list(zip(*got.alloc, strict=True))
    cov_cols = list(zip(*got.covered, strict=True))
    used_cols = list(zip(*got.used, strict=True))
    comm_cols = list(zip(*got.to_community, strict=True))
    zeros = [0] * n_t
    measured = [MEASURED] * n_t
    cidx = {m: j for j, m in enumerate(consumers)}
    pidx = {m: p for p, m in enumerate(producers)}
    texts: dict[str, str] = {}
    energy: dict[str, list[int]] = {}
    fmt = IntervalLines(ts, prov_col)
    for m in members:
        cj, pj = cidx.get(m), pidx.get(m)
        use, q1 = ccols[cj] if cj is not None else (zeros, measured)
        al = alloc_cols[cj] if cj is not None else zeros
        cov = cov_cols[cj] if cj is not None else zeros
        if pj is None:
            # worst quality of the member's points (a column's qualities are >= MEASURED)
            qs = list(map(QUALITY_LETTERS.__getitem__, q1))
            gen = sur = cs = zeros
            texts[m] = fmt.text(m, qs, use, al, cov)
        else:
            gen, q2 = gcols[pj]
            qs = [QUALITY_LETTERS[a if a >= b else b] for a, b in zip(q1, q2, strict=True)]
            sur = list(map(sub, gen, used_cols[pj]))
            cs = list(comm_cols[pj])
            texts[m] = fmt.text(m, qs, use, al, cov, (gen, sur, cs))
        su, sv = sum(use), sum(cov)
        energy[m] = [su, sum(al), sv, sum(gen), sum(sur), sum(cs), su - sv, sum(sur)]
    totals = _money(c, members, got.pairs, energy, sum(prov_col), texts)
    return Result(c, period, rule, members, Lines(texts), totals)


class IntervalLines:
    """Formats a member's interval lines for one period (``docs/settlement.md`` 3):
    ``I,member,start,quality,provisional,use,allocated,covered,generation,surplus,
    community_surplus,grid_import,grid_export`` with ``grid_import = use - covered`` and
    ``grid_export = surplus``.

    The lines of a month are millions of short strings. Each line is one ``%`` of a
    per-member format (``%s`` is ``str()``, as an f-string field is for an int) applied
    by ``map``, so no Python code runs per line; members without generation use a
    format with their zero generation fields written in. The interval starts and
    provisional flags are turned into text once per period.
    """

    def __init__(self, ts: Sequence[int], provisional: Sequence[int]) -> None:
        self._ts = list(map(str, ts))
        self._provisional = list(map(str, provisional))

    def text(self, member: str, quality: Sequence[str], use: Sequence[int],
             allocated: Sequence[int], covered: Sequence[int],
             producer: tuple[Sequence[int], Sequence[int], Sequence[int]] | None = None,
             ) -> str:
        """``member``'s lines joined by newlines; ``producer`` is its (generation,
        surplus, community surplus) per interval, None for all zero."""
        grid = list(map(sub, use, covered))
        head = "I," + member.replace("%", "%%") + ",%s,%s,%s,%s,%s,%s,"
        if producer is None:
            return "\n".join(map(f"{head}0,0,0,%s,0".__mod__, zip(
                self._ts, quality, self._provisional, use, allocated, covered, grid,
                strict=True)))
        gen, sur, cs = producer
        return "\n".join(map(f"{head}%s,%s,%s,%s,%s".__mod__, zip(
            self._ts, quality, self._provisional, use, allocated, covered, gen, sur, cs,
            grid, sur, strict=True)))


def _money(c: Community, members: tuple[str, ...], pairs: dict[tuple[int, int], list[int]],
           energy: dict[str, list[int]], provisional: int, texts: dict[str, str]
           ) -> dict[str, dict[str, int]]:
    """Append each member's counterparty and totals lines to its text; return the totals.

    Each pair's amounts are rounded once and used on both sides, so what buyers pay
    less the fees is exactly what sellers receive.
    """
    consumers, producers = c.consumers, c.producers
    paid = dict.fromkeys(members, 0)
    fees = dict.fromkeys(members, 0)
    received = dict.fromkeys(members, 0)
    cp_lines: dict[str, list[tuple[str, str, str]]] = {m: [] for m in members}
    for (p, j), (wh, value, fee) in pairs.items():
        seller, buyer = producers[p], consumers[j]
        amount, fee_amount = money(value), money(fee)
        paid[buyer] += amount
        fees[buyer] += fee_amount
        received[seller] += amount - fee_amount
        cp_lines[buyer].append((seller, "B", f"{wh},{amount},{fee_amount}"))
        cp_lines[seller].append((buyer, "S", f"{wh},{amount},{fee_amount}"))
    totals: dict[str, dict[str, int]] = {}
    pr = c.prices
    for m in members:
        tail = [f"C,{m},{other},{role},{rest}" for other, role, rest in sorted(cp_lines[m])]
        s = energy[m]
        values = s + [paid[m], fees[m], received[m], money(s[6] * pr.grid_supply),
                      money((s[4] - s[5]) * pr.feed_in), money(s[5] * pr.feed_in),
                      provisional]
        totals[m] = dict(zip(TOTAL_FIELDS, values, strict=True))
        tail.append("T," + m + "," + ",".join(map(str, values)))
        texts[m] = "\n".join([texts[m], *tail]) if texts[m] else "\n".join(tail)
    return totals
