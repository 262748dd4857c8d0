"""The settlement run's collector pause restores the collector's state, also across
threads and when a run fails."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from settlement import engine
from settlement.engine import run
from settlement.errors import InputError
from settlement.gcpause import collector_paused
from settlement.source import IntervalData, MarketOrder

from .conftest import small


@pytest.fixture(autouse=True)
def _restore_the_collector() -> Iterator[None]:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_paused_inside_nested_and_enabled_again_after() -> None:
    gc.enable()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer one still runs
    assert gc.isenabled()


def test_an_exception_inside_still_resumes() -> None:
    gc.enable()
    with pytest.raises(KeyError), collector_paused():
        raise KeyError("x")
    assert gc.isenabled()


def test_a_collector_the_application_disabled_stays_disabled() -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_threads_resume_once_when_the_last_ends() -> None:
    gc.enable()
    inside = threading.Barrier(3)
    leave_first = threading.Event()
    first_left = threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with collector_paused():
            inside.wait()
            leave_first.wait()
        first_left.set()

    def second() -> None:
        with collector_paused():
            inside.wait()
            first_left.wait()
            seen.append(gc.isenabled())  # the first has ended, this one still runs

    threads = [threading.Thread(target=f) for f in (first, second)]
    for t in threads:
        t.start()
    inside.wait()
    assert not gc.isenabled()
    leave_first.set()
    for t in threads:
        t.join(10)
    assert seen == [False]
    assert gc.isenabled()


@pytest.mark.parametrize("enabled", [True, False])
def test_run_leaves_the_collector_as_it_found_it(enabled: bool) -> None:
    c, period, data = small("market")
    bad = IntervalData(data.interval_ms, data.points, data.sources,
                       (MarketOrder(period.start_ms, "nobody", "bid", 50, 40_000),))
    if enabled:
        gc.enable()
    else:
        gc.disable()
    run(c, period, data)
    assert gc.isenabled() is enabled
    with pytest.raises(InputError, match="cannot bid"):
        run(c, period, bad)
    assert gc.isenabled() is enabled


def test_the_computation_runs_with_the_collector_paused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    c, period, data = small("pro_rata")
    gc.enable()
    seen: list[bool] = []
    compute = engine._run

    def spy(*args: Any) -> Any:
        seen.append(gc.isenabled())
        return compute(*args)

    monkeypatch.setattr(engine, "_run", spy)
    run(c, period, data)
    assert seen == [False]
    assert gc.isenabled()
