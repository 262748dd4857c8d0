"""Waiting: exponential backoff with jitter (one rule for failing meters and unreachable
replicas) and an interruptible sleep."""

from __future__ import annotations

import asyncio
import random

MAX_DOUBLINGS = 30


def backoff_delay(
    failures: int, initial_s: float, max_s: float, jitter: float, rng: random.Random
) -> float:
    """Seconds to wait after ``failures`` failures in a row (0 when there were none).

    The wait doubles from ``initial_s`` with each failure, capped at ``max_s``, then is
    shortened by a random fraction in ``[0, jitter)`` so that many gateways (or meters)
    that failed together do not retry in step.

    Raises:
        ValueError: ``jitter`` is outside ``[0, 1)``.
    """
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    if failures < 1:
        return 0.0
    base = min(max_s, initial_s * 2 ** min(failures - 1, MAX_DOUBLINGS))
    return base * (1.0 - jitter * rng.random())


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True as soon as ``stop`` is set, False when the time is up."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
