"""The engine's fast paths give exactly what the plain per-line code they replace gives.

Each reference below is the straightforward code the settlement engine used before its
hot loops were made faster (one f-string per line, one divmod per weight in a Python
loop, ...); hypothesis compares the two over random inputs, byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.engine import IntervalLines, _column
from settlement.rounding import apportion, capped_pro_rata
from settlement.source import MEASURED, MISSING, QUALITY_LETTERS, IntervalData

START = 1_796_083_200_000
STEP = 900_000


def reference_apportion(total: int, weights: Sequence[int]) -> list[int]:
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
    given_ = 0
    for i, w in enumerate(weights):
        if w < 0:
            raise ValueError(f"negative weight {w} at position {i}")
        q, r = divmod(total * w, wsum)
        parts[i] = q
        rems[i] = r
        given_ += q
    left = total - given_
    if left:
        order = sorted((i for i in range(n) if rems[i]), key=lambda i: (-rems[i], i))
        for i in order[:left]:
            parts[i] += 1
    return parts


def outcome(f: object, *args: object) -> object:
    try:
        return f(*args)  # type: ignore[operator]
    except ValueError as exc:
        return ("ValueError", str(exc))


@settings(max_examples=400)
@given(st.integers(0, 10**6), st.lists(st.integers(0, 50), max_size=40))
def test_apportion_equals_the_plain_loop(total: int, weights: list[int]) -> None:
    # small weights give many equal remainders: the tie order is exercised
    assert outcome(apportion, total, weights) == outcome(reference_apportion, total, weights)


@given(st.integers(-3, 10**12), st.lists(st.integers(-5, 10**9), max_size=12))
def test_apportion_equals_the_plain_loop_with_large_and_negative_values(
        total: int, weights: list[int]) -> None:
    assert outcome(apportion, total, weights) == outcome(reference_apportion, total, weights)


def test_capped_pro_rata_still_refuses_a_negative_demand() -> None:
    with pytest.raises(ValueError, match="negative demand"):
        capped_pro_rata(100, [3, -1])
    assert capped_pro_rata(5, []) == []


def reference_lines(m: str, ts: Sequence[int], prov: Sequence[int], qs: Sequence[str],
                    use: Sequence[int], al: Sequence[int], cov: Sequence[int],
                    gen: Sequence[int], sur: Sequence[int], cs: Sequence[int]) -> str:
    return "\n".join([f"I,{m},{t},{q},{pv},{u},{a},{v},{g},{s},{x},{u - v},{s}"
                      for t, q, pv, u, a, v, g, s, x in
                      zip(ts, qs, prov, use, al, cov, gen, sur, cs, strict=True)])


member_ids = st.text(st.sampled_from("abz09_-.%s{}"), min_size=1, max_size=8)


@settings(max_examples=200)
@given(st.data(), member_ids, st.integers(0, 30), st.booleans())
def test_interval_lines_equal_one_f_string_per_line(data: st.DataObject, member: str,
                                                     n: int, producer: bool) -> None:
    def col(lo: int, hi: int) -> list[int]:
        return data.draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))

    ts = range(START, START + n * STEP, STEP)
    prov = col(0, 1)
    qs = [QUALITY_LETTERS[q] for q in col(0, 3)]
    use, al, cov = col(0, 10**7), col(0, 10**7), col(0, 10**7)
    if producer:
        gen, sur, cs = col(0, 10**7), col(-5, 10**7), col(0, 10**7)
        got = IntervalLines(ts, prov).text(member, qs, use, al, cov, (gen, sur, cs))
    else:
        gen = sur = cs = [0] * n
        got = IntervalLines(ts, prov).text(member, qs, use, al, cov)
    assert got == reference_lines(member, ts, prov, qs, use, al, cov, gen, sur, cs)


def reference_column(data: IntervalData, points: tuple[str, ...], ts: range
                     ) -> tuple[list[int], list[int]]:
    wh = [0] * len(ts)
    q = [MEASURED] * len(ts)
    missing = (0, MISSING)
    for point in points:
        d = data.points.get(point, {})
        vals = [d.get(t, missing) for t in ts]
        wh = [a + v[0] for a, v in zip(wh, vals, strict=True)]
        q = [a if a >= v[1] else v[1] for a, v in zip(q, vals, strict=True)]
    return wh, q


@settings(max_examples=200)
@given(st.data(), st.integers(0, 12), st.integers(0, 3))
def test_column_equals_the_plain_loop(data: st.DataObject, n: int, n_points: int) -> None:
    ts = range(START, START + n * STEP, STEP)
    names = tuple(f"p{i}" for i in range(n_points + 1))  # the last point has no data
    points = {}
    for name in names[:-1]:
        starts = data.draw(st.sets(st.sampled_from(list(ts)) if n else st.nothing()))
        points[name] = {t: (data.draw(st.integers(0, 10**6)), data.draw(st.integers(0, 3)))
                        for t in sorted(starts)}
    iv = IntervalData(STEP, points)
    chosen = tuple(data.draw(st.permutations(names))[:data.draw(st.integers(0, len(names)))])
    assert _column(iv, chosen, ts) == reference_column(iv, chosen, ts)
