"""Poll cost per meter profile: coalesced reads versus one request per value.

For every Modbus profile, a simulated meter is served as RTU frames over TCP (the
same bytes an RS-485 line carries) and polled once with the read plan of
drivers.coalesce, then once with one request per value (the common approach), in
the same run. Bytes are counted from the frames pymodbus actually sent and received.
Wire time at 9600 baud is computed from bytes, since a pty or socket shows none:
11 bits per character (start, 8 data, parity or 2nd stop, stop) plus a 3.5-character
silence after every frame.

    .venv/bin/python bench/poll.py [--json] [--baud 9600]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import add_common_args, report  # noqa: E402

from drivers import profile  # noqa: E402
from drivers.base import MeterSpec, open_meter  # noqa: E402
from drivers.modbus import ModbusMeter  # noqa: E402
from drivers.sim.meter import MeterServer, SimUnit  # noqa: E402
from drivers.sim.model import MeterModel  # noqa: E402

BITS_PER_CHAR = 11
GAP_CHARS = 3.5


def wire_ms(nbytes: int, frames: int, baud: int) -> float:
    """Time on an RS-485 line for ``nbytes`` in ``frames`` frames at ``baud``."""
    return (nbytes + GAP_CHARS * frames) * BITS_PER_CHAR / baud * 1000.0


async def measure(name: str, baud: int) -> dict[str, object]:
    p = profile.load(name)
    async with MeterServer([SimUnit(1, p, MeterModel())], transport="rtu-tcp") as srv:
        m = open_meter(MeterSpec("bench", "modbus-rtu-over-tcp", host="127.0.0.1",
                                 tcp_port=srv.tcp_port, unit=1, profile=name))
        assert isinstance(m, ModbusMeter)
        s = m.bus.stats
        try:
            r0, b0 = s.requests, s.tx_bytes + s.rx_bytes
            readings = await m.read(0)
            reqs, nbytes = s.requests - r0, s.tx_bytes + s.rx_bytes - b0
            r0, b0 = s.requests, s.tx_bytes + s.rx_bytes
            for reg in p.registers:  # the common approach: one request per value
                await m.read_block(reg.function, reg.address, reg.count)
            naive_reqs, naive_bytes = s.requests - r0, s.tx_bytes + s.rx_bytes - b0
        finally:
            await m.close()
    ms = wire_ms(nbytes, 2 * reqs, baud)
    naive_ms = wire_ms(naive_bytes, 2 * naive_reqs, baud)
    return {"profile": name, "values": len(readings), "requests": reqs, "bytes": nbytes,
            f"wire_ms@{baud}": round(ms, 1), "naive_requests": naive_reqs,
            "naive_bytes": naive_bytes, f"naive_wire_ms@{baud}": round(naive_ms, 1),
            "speedup": round(naive_ms / ms, 2)}


async def run(baud: int) -> list[dict[str, object]]:
    names = sorted(n for n in profile.available() if profile.load(n).protocol == "modbus")
    return [await measure(n, baud) for n in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--baud", type=int, default=9600)
    args = parser.parse_args()
    rows = asyncio.run(run(args.baud))
    key, nkey = f"wire_ms@{args.baud}", f"naive_wire_ms@{args.baud}"
    summary = {
        "profiles": len(rows),
        "requests_total": sum(int(r["requests"]) for r in rows),  # type: ignore[call-overload]
        "naive_requests_total": sum(int(r["naive_requests"]) for r in rows),  # type: ignore[call-overload]
        f"wire_ms_total@{args.baud}": round(sum(float(r[key]) for r in rows), 1),  # type: ignore[arg-type]
        f"naive_wire_ms_total@{args.baud}": round(sum(float(r[nkey]) for r in rows), 1),  # type: ignore[arg-type]
    }
    report("poll cost per profile: coalesced vs one request per value", rows, summary, args.json)


if __name__ == "__main__":
    main()
