"""Pixels of a PNG screenshot, to tell a drawn page from a blank one.

Decodes the 8-bit, non-interlaced RGB/RGBA PNGs browsers write (no dependency);
anything else raises ValueError.
"""

from __future__ import annotations

import struct
import zlib


def pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """``(width, height, rows)``: each row ``width * channels`` bytes, unfiltered.

    Raises:
        ValueError: not a PNG this decoder reads.
    """
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, ihdr = 8, b"", None
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", data)
        elif kind == b"IDAT":
            idat += data
    if ihdr is None:
        raise ValueError("PNG without IHDR")
    w, h, depth, color, _, _, interlace = ihdr
    if depth != 8 or color not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, color type {color}")
    ch = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * ch
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0
            b = prev[i]
            c = prev[i - ch] if i >= ch else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
            elif f != 0:
                raise ValueError(f"bad PNG filter {f}")
        rows.append(bytes(line))
        prev = line
    return w, h, rows


def luma_variance(png: bytes, step: int = 4) -> float:
    """Variance of the grey level over every ``step``-th pixel (0 for a blank image)."""
    w, _h, rows = pixels(png)
    ch = len(rows[0]) // w
    vals = [(r[x] * 299 + r[x + 1] * 587 + r[x + 2] * 114) / 1000
            for r in rows[::step] for x in range(0, w * ch, ch * step)]
    mean = sum(vals) / len(vals)
    return sum((v - mean) ** 2 for v in vals) / len(vals)
