"""Fixtures of the forwarding tests: a local chain in the real store, the real state DB,
the real replica server in a child process, and a runner for forwarder tasks."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.pipeline.forwarder import Forwarder, ForwarderOptions
from agent.storage.state import StateDB
from agent.storage.store import BlockStore, StoreOptions
from ledger import Block
from tests.support.chains import gateway_key, make_chain
from tests.support.replicaproc import ReplicaProcess

FAST = ForwarderOptions(timeout_s=2.0, backoff_initial_s=0.02, backoff_max_s=0.2,
                        idle_poll_s=0.05, cursor_flush_s=0.0)


def open_store(directory: Path) -> BlockStore:
    return BlockStore.open(directory, options=StoreOptions(fsync=False))


def open_state(path: Path) -> StateDB:
    return StateDB(path)


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> bytes:
    """A gateway seed of its own for each test (tests share one replica process)."""
    return hashlib.sha256(request.node.nodeid.encode()).digest()[:12]


@pytest.fixture
def key(seed: bytes) -> bytes:
    return gateway_key(seed)


@pytest.fixture
def chain(seed: bytes) -> list[Block]:
    return make_chain(seed, 40, 5)


@pytest.fixture
def store(tmp_path: Path, chain: list[Block]) -> Iterator[BlockStore]:
    s = open_store(tmp_path / "ledger")
    s.append_many(chain)
    yield s
    s.close()


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDB]:
    st = open_state(tmp_path / "state.json")
    yield st
    st.close()


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaProcess]:
    """The real replica server, shared by a test module (each test enrolls its own key)."""
    rep = ReplicaProcess(tmp_path_factory.mktemp("replica"), enroll=[])
    rep.start()
    yield rep
    rep.stop()


def same_chain(replica_records: list[bytes], store: BlockStore, upto: int) -> None:
    """The replica holds exactly the local blocks 0..upto, byte for byte, in order."""
    assert len(replica_records) == upto + 1, (len(replica_records), upto + 1)
    for h, rec in enumerate(replica_records):
        assert rec == store.get_record(h), f"block {h} differs"


def run_until(fws: list[Forwarder], done: Callable[[], bool], timeout: float = 30.0,
              during: Callable[[float], Any] | None = None) -> float:
    """Run forwarders until ``done()`` (checked every 10 ms) or ``timeout``; return seconds.

    ``during(elapsed)`` is called on every check (to add blocks, flip faults, ...).
    Asserts the forwarders stop once asked, well before a hung request would end.
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
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            # A hung request lasts 60 s: stopping well before that shows the forwarders are
            # cancelled, not waited out (the margin leaves room for a loaded machine).
            assert time.monotonic() - t_stop < 20.0, "forwarders did not stop promptly"

    return asyncio.run(main())
