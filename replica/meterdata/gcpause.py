"""Pause CPython's cyclic garbage collector while the engine builds its results.

A month of 15-minute intervals is about 3,000 :class:`~replica.meterdata.Interval`
objects per register, each with its trace tuple and :class:`~replica.meterdata.Origin`:
some 9,000 container objects, all kept until the result is returned. The cyclic
collector counts them as they are made; because they are still alive when it runs, it
moves them to older generations, and every few registers it runs a full collection
that walks every container object of the process (the web framework's and every
library's), which costs more than the computation itself when many registers are
computed in a row (measured in bench/intervals.py: about 40 % of the engine's time).

Nothing the engine builds can form a reference cycle (integers, strings, tuples and
frozen dataclasses that refer only to those), so collecting cycles while it runs
finds nothing of its own. :func:`collector_paused` disables the collector for the
duration of one computation and restores it afterwards. Reference counting still
frees every object as usual; only the search for cycles, which the rest of the
process might make meanwhile, is delayed until the computation ends.

The pause is process-wide, so it is counted: overlapping computations in several
threads pause once and resume when the last one ends, and a collector that was
already disabled (by the application) stays disabled.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_resume = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block; restore its state after it.

    Nested and concurrent uses are counted; the collector is enabled again when the
    outermost (last) one ends, and only if it was enabled when the first one began.
    Raises nothing of its own.
    """
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
