"""Read planning: cover a register map with the fewest read requests.

Each value is a run of registers ``[address, address + count)`` read with one
function (3 holding or 4 input). A request reads one contiguous range with one
function, at most ``max_registers`` (<= 125) long, and may span runs of *undefined*
registers (covered by no value of the map) of at most ``max_gap`` registers,
because some devices refuse reads over registers they do not define. A value is
never split across requests.

:func:`plan` is greedy per function: walk values in address order and extend the
current request while the next value still fits the length and gap limits. This is
optimal: any valid plan's first request starts at or before the first value and
so can cover no more of the sorted values than the greedy prefix; by induction the
greedy plan uses no more requests. ``tests/drivers/test_coalesce.py`` checks this
against brute force over random maps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A value's registers: ``count`` registers from ``address`` with ``function``."""

    function: int
    address: int
    count: int

    @property
    def end(self) -> int:
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class Request:
    """One read request and the spans it answers."""

    function: int
    address: int
    count: int
    spans: tuple[Span, ...]

    @property
    def end(self) -> int:
        return self.address + self.count


def plan(spans: Iterable[Span], max_registers: int = 125, max_gap: int = 0) -> list[Request]:
    """The fewest requests reading every span.

    Raises:
        ValueError: a single span is longer than ``max_registers``.
    """
    out: list[Request] = []
    by_func: dict[int, list[Span]] = {}
    for s in spans:
        if s.count > max_registers:
            raise ValueError(f"span at {s.address} ({s.count} registers) exceeds "
                             f"max_registers {max_registers}")
        by_func.setdefault(s.function, []).append(s)
    for func in sorted(by_func):
        ordered = sorted(set(by_func[func]), key=lambda s: (s.address, s.end))
        group: list[Span] = []
        start = end = 0
        for s in ordered:
            if group and s.address - end <= max_gap and max(end, s.end) - start <= max_registers:
                group.append(s)
                end = max(end, s.end)
                continue
            if group:
                out.append(Request(func, start, end - start, tuple(group)))
            group, start, end = [s], s.address, s.end
        if group:
            out.append(Request(func, start, end - start, tuple(group)))
    return out


def naive(spans: Iterable[Span]) -> list[Request]:
    """One request per value: the common approach, for comparison in benchmarks."""
    return [Request(s.function, s.address, s.count, (s,))
            for s in sorted(set(spans), key=lambda s: (s.function, s.address, s.end))]
