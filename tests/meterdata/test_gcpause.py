"""The engine's collector pause restores the collector's state, also across threads."""

from __future__ import annotations

import gc
import threading

import pytest

from replica.meterdata import RegisterSample, compute_intervals
from replica.meterdata.gcpause import collector_paused
from replica.meterdata.vee import Origin


@pytest.fixture(autouse=True)
def _restore_the_collector():
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_paused_inside_and_enabled_again_after():
    gc.enable()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer one still runs
    assert gc.isenabled()


def test_an_exception_inside_still_resumes():
    gc.enable()
    with pytest.raises(KeyError), collector_paused():
        raise KeyError("x")
    assert gc.isenabled()


def test_a_collector_the_application_disabled_stays_disabled():
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_threads_resume_once_when_the_last_ends():
    gc.enable()
    inside = threading.Barrier(3)
    leave_first = threading.Event()
    first_left = threading.Event()

    def first():
        with collector_paused():
            inside.wait()
            leave_first.wait()
        first_left.set()

    seen: list[bool] = []

    def second():
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


def test_compute_intervals_leaves_the_collector_as_it_found_it():
    samples = [RegisterSample(k * 900_000, 10 * k, Origin("aa", k, 0)) for k in range(9)]
    for state in (True, False):
        if state:
            gc.enable()
        else:
            gc.disable()
        compute_intervals(samples, start_ms=0, end_ms=7_200_000, interval_ms=900_000)
        assert gc.isenabled() is state
        with pytest.raises(ValueError):
            compute_intervals(samples, start_ms=1, end_ms=7_200_000, interval_ms=900_000)
        assert gc.isenabled() is state
