"""Slow clients against a replica: many connections that start a push body and stall.

Used by the resource tests and ``bench/replica.py``. Each client connects from its own
loopback address (127.0.1.x), sends the headers of a push with a large
``Content-Length``, sends part of the body in 64 KiB pieces and then holds the
connection. :func:`peak_rss_kib` reads a process's peak resident set (``VmHWM``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
from pathlib import Path

PIECE = 64 * 1024


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set size in KiB (``VmHWM`` of ``/proc/PID/status``)."""
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert m, "no VmHWM"
    return int(m.group(1))


def rss_kib(pid: int) -> int:
    """The process's current resident set size in KiB."""
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert m, "no VmRSS"
    return int(m.group(1))


async def _one(i: int, port: int, path: str, declared: int, send: int, hold_s: float,
               outcomes: collections.Counter[str], opened: asyncio.Event, count: list[int],
               n: int) -> None:
    source = f"127.0.1.{1 + i % 250}"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=(source, 0))
    except OSError:
        outcomes["connect-failed"] += 1
        count[0] += 1
        if count[0] == n:
            opened.set()
        return
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                     f"\r\nContent-Length: {declared}\r\n\r\n".encode())
        piece = b"{" + b" " * (PIECE - 1)  # never completed: declared > sent

        async def send_part() -> None:
            sent = 0
            while sent < send:
                writer.write(piece)
                await writer.drain()
                sent += PIECE

        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await asyncio.wait_for(send_part(), hold_s)
        count[0] += 1
        if count[0] == n:
            opened.set()
        try:
            line = await asyncio.wait_for(reader.readline(), hold_s)
            status = line.split()[1].decode() if line.startswith(b"HTTP/") else "closed"
        except TimeoutError:
            status = "held"
        except (ConnectionError, OSError):
            status = "closed"
        outcomes[status] += 1
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def slow_clients(port: int, path: str, n: int, declared: int, send: int,
                       hold_s: float, pid: int | None = None) -> tuple[dict[str, int], int]:
    """Run ``n`` slow clients; return their outcomes (HTTP status, ``held``, ``closed``)
    and the server's current RSS (KiB, 0 without ``pid``) once all have sent their part."""
    outcomes: collections.Counter[str] = collections.Counter()
    opened = asyncio.Event()
    count = [0]
    tasks = [asyncio.create_task(_one(i, port, path, declared, send, hold_s, outcomes,
                                      opened, count, n)) for i in range(n)]
    await asyncio.wait_for(opened.wait(), 120)
    await asyncio.sleep(0.5)
    rss = rss_kib(pid) if pid else 0
    await asyncio.gather(*tasks)
    return dict(outcomes), rss
