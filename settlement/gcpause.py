"""Pause CPython's cyclic garbage collector while the engine settles a period.

A month of a 1,000-member community is millions of container objects (the per-interval
rows of every rule, a market's orders, trades and flows), all alive until the result is
returned. The cyclic collector counts them as they are made, moves them to older
generations because they are still alive, and now and then runs a full collection over
every container of the process: measured in bench/settle.py at about 8 % of a pro rata
run and over 20 % of a market run.

Nothing the engine builds can form a reference cycle (integers, strings, tuples, lists,
dicts and frozen dataclasses of those), so collecting cycles during a run finds nothing
of its own. :func:`collector_paused` disables the collector for one computation and
restores it afterwards; reference counting still frees every object as usual. The pause
is process-wide, so it is counted: overlapping runs in several threads pause once and
resume when the last ends, and a collector that was already disabled stays disabled.
(The same design as ``replica/meterdata/gcpause.py``, which settlement may not import.)
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
