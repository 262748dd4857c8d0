"""A raw Modbus RTU responder for faults a conforming server cannot produce.

It listens on TCP (RTU frames over TCP, as a serial gateway passes them through),
answers read requests (functions 3 and 4) from a register image, and misbehaves on
purpose according to :attr:`FaultResponder.mode`:

- ``ok``          -- a correct answer (to prove the responder itself is right);
- ``silent``      -- no answer at all, like an RTU slave with another unit id or no power;
- ``bad-crc``     -- a correct frame with its CRC corrupted;
- ``garbage``     -- random bytes instead of a frame;
- ``wrong-unit``  -- a correct frame from a different unit id;
- ``exception``   -- a Modbus exception response with :attr:`exception_code`.

Frames are built with pymodbus's own CRC routine; only the fault is hand-made.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct

from pymodbus.framer.rtu import FramerRTU

MODES = ("ok", "silent", "bad-crc", "garbage", "wrong-unit", "exception")


def crc(data: bytes) -> bytes:
    """Modbus CRC16 of ``data`` as it goes on the wire (low byte first)."""
    return struct.pack(">H", FramerRTU.compute_CRC(data))  # pymodbus returns it byte-swapped


class FaultResponder:
    """RTU-over-TCP responder; ``async with`` starts it on 127.0.0.1 and a free port."""

    def __init__(self, image: dict[tuple[int, int], int], unit: int = 1, mode: str = "ok",
                 exception_code: int = 2, seed: int = 7) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.image = image
        self.unit = unit
        self.mode = mode
        self.exception_code = exception_code
        self.requests = 0
        self.disconnects = 0
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self.port = 0

    def answer(self, request: bytes) -> bytes | None:
        """The bytes to send back for one 8-byte read request (None = stay silent)."""
        unit, func, addr, count = struct.unpack(">BBHH", request[:6])
        if unit != self.unit or self.mode == "silent":
            return None
        if self.mode == "garbage":
            return bytes(self._rng.randrange(256) for _ in range(5 + 2 * count))
        if self.mode == "exception":
            body = bytes((unit, func | 0x80, self.exception_code))
            return body + crc(body)
        words = [self.image.get((func, a), 0) for a in range(addr, addr + count)]
        reply_unit = (unit % 247) + 1 if self.mode == "wrong-unit" else unit
        body = bytes((reply_unit, func, 2 * count)) + struct.pack(f">{count}H", *words)
        frame = body + crc(body)
        if self.mode == "bad-crc":
            frame = frame[:-1] + bytes((frame[-1] ^ 0xFF,))
        return frame

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readexactly(8)
                self.requests += 1
                if request[1] not in (3, 4) or crc(request[:6]) != request[6:]:
                    continue  # a real slave ignores what it cannot parse
                reply = self.answer(request)
                if reply is not None:
                    writer.write(reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.disconnects += 1  # the master hung up: serve the next connection
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def __aenter__(self) -> FaultResponder:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
