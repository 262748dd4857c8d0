"""Signed chains of cumulative register readings for the meter-data tests and bench.

    rs = register_readings("house", "1-0:1.8.0", start_ms, n=288, step_ms=300_000,
                           wh_per_step=lambda k: 40 + k % 7)
    blocks = seal_readings(b"gw-a", rs, per_block=12)

Everything is deterministic (fixed keys, zero salts for plain payloads, derived salts
and ephemeral keys for sealed ones).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import nacl.signing

from ledger import Block, Reading, seal_block
from tests.support.chains import signing_seed


def register_readings(meter_id: str, obis: str, start_ms: int, *, n: int, step_ms: int,
                      wh_per_step: Callable[[int], int], base_wh: int = 1_000_000,
                      unit: str = "Wh", exponent: int = 0, skip: Callable[[int], bool]
                      | None = None, quality: Callable[[int], int] | None = None
                      ) -> list[Reading]:
    """``n`` readings of a cumulative register every ``step_ms`` from ``start_ms``.

    The register starts at ``base_wh`` and grows by ``wh_per_step(k)`` before reading
    ``k``; readings where ``skip(k)`` are left out (a gap). The stored value is the
    register in ``unit * 10**exponent`` (floored).
    """
    out = []
    wh = base_wh
    scale = {"kWh": 3}.get(unit, 0) + exponent
    for k in range(n):
        if k:
            wh += wh_per_step(k)
        if skip is not None and skip(k):
            continue
        value = wh // 10**scale if scale >= 0 else wh * 10**-scale
        out.append(Reading.make(meter_id, obis, value, exponent, unit, start_ms + k * step_ms,
                                quality=quality(k) if quality else 0))
    return out


def seal_readings(seed: bytes, readings: Sequence[Reading], *, per_block: int,
                  prev: Block | None = None, recipient_key: bytes | None = None
                  ) -> list[Block]:
    """Seal readings (sorted by time, stable) into consecutive blocks of ``per_block``.

    Each block spans its readings' first to last timestamp (never before the previous
    block's end).
    """
    sk = nacl.signing.SigningKey(signing_seed(seed))
    ordered = sorted(readings, key=lambda r: r.timestamp_ms)
    header = prev.header if prev is not None else None
    out: list[Block] = []
    for i in range(0, len(ordered), per_block):
        batch = ordered[i:i + per_block]
        height = 0 if header is None else header.height + 1
        t0 = batch[0].timestamp_ms
        if header is not None:
            t0 = max(t0, header.time_end_ms)
        t1 = max(t0, batch[-1].timestamp_ms)
        if recipient_key is None:
            salts = [bytes(16)] * len(batch)
            eph = None
        else:
            salts = [_derive(seed, b"salt", height, j)[:16] for j in range(len(batch))]
            eph = _derive(seed, b"eph", height, 0)
        block = seal_block(sk, header, batch, salts, t0, t1, recipient_key=recipient_key,
                           ephemeral_sk=eph)
        out.append(block)
        header = block.header
    return out


def _derive(seed: bytes, label: bytes, height: int, index: int) -> bytes:
    return hashlib.sha256(label + seed + height.to_bytes(8, "big") + index.to_bytes(4, "big")
                          ).digest()
