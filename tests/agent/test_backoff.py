"""The one backoff rule for meters and replicas: doubling, capped, jittered downwards."""

from __future__ import annotations

import random

import pytest

from agent.pipeline.backoff import backoff_delay


def test_no_failure_no_wait() -> None:
    assert backoff_delay(0, 1.0, 60.0, 0.5, random.Random(1)) == 0.0


def test_doubles_and_caps_without_jitter() -> None:
    rng = random.Random(1)
    assert [backoff_delay(n, 0.5, 5.0, 0.0, rng) for n in range(1, 7)] == [
        0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_only_shortens_within_its_fraction() -> None:
    rng = random.Random(7)
    waits = [backoff_delay(4, 1.0, 100.0, 0.5, rng) for _ in range(500)]
    assert all(4.0 < w <= 8.0 for w in waits)
    assert max(waits) - min(waits) > 3.0  # spread out, not in step


def test_huge_failure_counts_do_not_overflow() -> None:
    assert backoff_delay(10_000, 1.0, 300.0, 0.0, random.Random(1)) == 300.0


def test_bad_jitter_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        backoff_delay(1, 1.0, 2.0, 1.0, random.Random(1))


def test_stopped_within_reports_stop_or_timeout() -> None:
    import asyncio

    from agent.pipeline.backoff import stopped_within

    async def go() -> tuple[bool, bool]:
        stop = asyncio.Event()
        timed_out = await stopped_within(stop, 0.01)
        asyncio.get_running_loop().call_later(0.01, stop.set)
        stopped = await stopped_within(stop, 5.0)
        return timed_out, stopped

    assert asyncio.run(go()) == (False, True)
