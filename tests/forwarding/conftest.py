"""Fixtures of the forwarding tests: a local chain in a store, cursors, and a runner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.forwarder import Forwarder, ForwarderOptions
from agent.ledger import Block
from tests.support.chains import gateway_key, make_chain, signing_seed

SEED = b"fwd-gw"
KEY = gateway_key(SEED)
SK = signing_seed(SEED)

FAST = ForwarderOptions(timeout_s=2.0, backoff_initial_s=0.02, backoff_max_s=0.2,
                        idle_poll_s=0.05, cursor_flush_s=0.0)


def open_store(directory: Path):  # type: ignore[no-untyped-def]
    from agent.store import BlockStore, StoreOptions

    return BlockStore.open(directory, options=StoreOptions(fsync=False))


def open_state(path: Path):  # type: ignore[no-untyped-def]
    from agent.state import StateDB

    return StateDB(path)


@pytest.fixture
def chain() -> list[Block]:
    return make_chain(SEED, 40, 5)


@pytest.fixture
def store(tmp_path: Path, chain: list[Block]) -> Iterator[object]:
    s = open_store(tmp_path / "ledger")
    s.append_many(chain)
    yield s
    s.close()


@pytest.fixture
def state(tmp_path: Path) -> Iterator[object]:
    st = open_state(tmp_path / "state.json")
    yield st
    st.close()


def run_until(fws: list[Forwarder], done: Callable[[], bool], timeout: float = 20.0,
              during: Callable[[float], None] | None = None) -> float:
    """Run forwarders until ``done()`` (checked every 10 ms) or ``timeout``; return seconds.

    ``during(elapsed)`` is called on every check (to add blocks, flip faults, ...).
    """

    async def main() -> float:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(fw.run(stop)) for fw in fws]
        t0 = time.monotonic()
        try:
            while not done():
                elapsed = time.monotonic() - t0
                if elapsed > timeout:
                    raise AssertionError(f"not done after {timeout} s: "
                                         f"{[fw.status for fw in fws]}")
                if during is not None:
                    during(elapsed)
                    for fw in fws:
                        fw.notify()
                await asyncio.sleep(0.01)
            return time.monotonic() - t0
        finally:
            stop.set()
            t_stop = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*tasks), 5)
            assert time.monotonic() - t_stop < 3.0, "forwarders did not stop promptly"

    return asyncio.run(main())
