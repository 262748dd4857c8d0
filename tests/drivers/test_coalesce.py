"""Read planning: valid requests, and provably the fewest (brute force on random maps)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.coalesce import Request, Span, naive, plan


def undefined_runs_ok(req: Request, spans: list[Span], max_gap: int) -> bool:
    """Every run of registers in ``req`` covered by no span of its function is <= max_gap."""
    defined = {a for s in spans if s.function == req.function for a in range(s.address, s.end)}
    run = 0
    for a in range(req.address, req.end):
        run = 0 if a in defined else run + 1
        if run > max_gap:
            return False
    return True


def check_valid(reqs: list[Request], spans: list[Span], max_regs: int, max_gap: int) -> None:
    for r in reqs:
        assert 1 <= r.count <= max_regs
        assert undefined_runs_ok(r, spans, max_gap)
    for s in spans:
        assert any(r.function == s.function and r.address <= s.address and s.end <= r.end
                   for r in reqs), f"{s} not covered"


def brute_force_minimum(spans: list[Span], max_regs: int, max_gap: int) -> int:
    """Smallest number of valid ranges covering every span, by exhaustive search."""
    total = 0
    for func in {s.function for s in spans}:
        mine = sorted({s for s in spans if s.function == func}, key=lambda s: s.address)
        starts = sorted({s.address for s in mine})
        ends = sorted({s.end for s in mine})
        candidates = []
        for a in starts:
            for e in ends:
                req = Request(func, a, e - a, ())
                if 0 < e - a <= max_regs and undefined_runs_ok(req, spans, max_gap):
                    candidates.append(frozenset(i for i, s in enumerate(mine)
                                                if a <= s.address and s.end <= e))
        for k in range(1, len(mine) + 1):
            if any(frozenset().union(*combo) == frozenset(range(len(mine)))
                   for combo in itertools.combinations(candidates, k)):
                total += k
                break
    return total


span_st = st.builds(Span, st.sampled_from([3, 4]), st.integers(0, 60),
                    st.sampled_from([1, 2, 4]))


@settings(max_examples=300, deadline=None)
@given(st.lists(span_st, min_size=1, max_size=6), st.integers(2, 20), st.integers(0, 6))
def test_plan_is_valid_and_minimal(spans: list[Span], max_regs: int, max_gap: int) -> None:
    spans = [s for s in spans if s.count <= max_regs] or [Span(3, 0, 1)]
    reqs = plan(spans, max_registers=max_regs, max_gap=max_gap)
    check_valid(reqs, spans, max_regs, max_gap)
    assert len(reqs) == brute_force_minimum(spans, max_regs, max_gap)


def test_contiguous_map_is_one_request_and_limits_split_it() -> None:
    spans = [Span(4, a, 2) for a in range(0, 200, 2)]  # 200 registers, no gaps
    assert len(plan(spans, 125, 0)) == 2
    assert [r.count for r in plan(spans, 125, 0)] == [124, 76]  # values are never split
    assert len(naive(spans)) == 100


def test_gap_limit_and_functions_separate_requests() -> None:
    spans = [Span(4, 0, 2), Span(4, 10, 2), Span(3, 0, 2)]
    assert len(plan(spans, 125, 8)) == 2
    assert len(plan(spans, 125, 7)) == 3


def test_oversized_value_is_refused() -> None:
    with pytest.raises(ValueError, match="max_registers"):
        plan([Span(3, 0, 4)], max_registers=2)
