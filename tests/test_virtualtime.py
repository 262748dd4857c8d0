"""The virtual-time event loop the timing tests run on (tests/support/virtualtime.py)."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from tests.support.virtualtime import WALL_EPOCH_S, virtual_time


def test_sleeps_and_timeouts_fire_in_order_at_their_virtual_instants() -> None:
    fired: list[tuple[str, float]] = []

    async def sleeper(name: str, s: float) -> None:
        await asyncio.sleep(s)
        fired.append((name, asyncio.get_running_loop().time()))

    async def go() -> None:
        await asyncio.gather(sleeper("b", 3600.0), sleeper("a", 0.25), sleeper("c", 7200.5))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 10.0)

    with virtual_time() as vt:
        vt.run(go())
        assert fired == [("a", 0.25), ("b", 3600.0), ("c", 7200.5)]
        assert vt.mono() == 7210.5 and vt.wall() == WALL_EPOCH_S + 7210.5


def test_ready_sockets_are_served_before_time_jumps() -> None:
    async def go() -> float:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        try:
            later = loop.call_later(100.0, lambda: None)  # a timer time could jump to
            b.send(b"x")
            assert await loop.sock_recv(a, 1) == b"x"
            later.cancel()
            return loop.time()
        finally:
            a.close()
            b.close()

    with virtual_time() as vt:
        assert vt.run(go()) == 0.0


def test_a_thread_wakes_a_loop_that_has_no_timer() -> None:
    async def go() -> str:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        threading.Thread(target=lambda: loop.call_soon_threadsafe(fut.set_result, "woken")
                         ).start()
        return await fut

    with virtual_time() as vt:
        assert vt.run(go()) == "woken"
