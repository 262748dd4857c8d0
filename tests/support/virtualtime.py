"""An asyncio event loop on virtual time, for tests of code that waits on timers.

``loop.time()`` starts at 0 and moves only when the loop has nothing ready to run: it
then jumps straight to the next timer. Sleeps, ``wait_for`` timeouts and ``call_later``
fire in the order and at the (virtual) instants the code asked for, however slow or
loaded the machine is, and a test of "one poll per 0.25 s for 1.4 s" takes milliseconds.

    with virtual_time() as vt:
        vt.run(scenario())       # like asyncio.run, on virtual time
        vt.wall()                # a wall clock on the same virtual time (for Poller(wall=))

Limits: only for code whose waits are timers of this loop and callbacks it schedules
itself. Work in threads (``run_in_executor``, ``to_thread``) or in other processes does
not hold virtual time back: the loop would jump past it. Real sockets and file
descriptors still work (they are polled without waiting before time jumps).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

WALL_EPOCH_S = 1_700_000_000.1
"""Where :meth:`VirtualTime.wall` starts: a realistic Unix time, off any round boundary."""


class _VirtualSelector(selectors.DefaultSelector):
    """The real selector, but a wait with nothing ready advances virtual time instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None
               ) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout is None or timeout <= 0:
            if not ready and timeout is None:
                # no timer at all: only another thread or a descriptor can wake the loop
                return super().select(None)
            return ready
        self.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is virtual (see the module docstring)."""

    def __init__(self) -> None:
        self._vselector = _VirtualSelector()
        super().__init__(self._vselector)

    def time(self) -> float:
        return self._vselector.now


class VirtualTime:
    """Runs coroutines on one :class:`VirtualTimeLoop` and offers clocks that follow it."""

    def __init__(self, runner: asyncio.Runner) -> None:
        self._runner = runner

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._runner.get_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on virtual time (as :func:`asyncio.run` would)."""
        return self._runner.run(coro)

    def mono(self) -> float:
        """Virtual monotonic seconds (the loop's time)."""
        return self.loop.time()

    def wall(self) -> float:
        """Virtual Unix time: :data:`WALL_EPOCH_S` plus the loop's time."""
        return WALL_EPOCH_S + self.loop.time()


@contextmanager
def virtual_time() -> Iterator[VirtualTime]:
    """A :class:`VirtualTime` whose loop is closed on exit."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        yield VirtualTime(runner)
