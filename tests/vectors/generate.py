"""Generate the ledger test vectors (docs/ledger-format.md) from hard-coded keys.

    python tests/vectors/generate.py [--out DIR]

Writes, deterministically (same bytes on every run):

- ``readings.json``  -- canonical reading encodings and leaf hashes; non-canonical ones.
- ``chains.json``    -- valid chains (plain and sealed) with every expected hash.
- ``corrupt.json``   -- systematic corruptions of a valid chain, each with ``want_error``
  (the ChainError reason) and ``want_height`` (the chain position that fails).
- ``merkle.json``    -- Merkle roots, inclusion proofs and tampered proofs.
- ``proofs.json``    -- signed-block inclusion proofs and fork evidence.

All byte strings are lowercase hex. Every vector's outcome is computed by
``ledger`` at generation time and the script refuses to write a corruption
vector that unexpectedly verifies.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import nacl.public  # noqa: E402
import nacl.signing  # noqa: E402

import ledger as L  # noqa: E402
from agent.storage.dirverify import verify_ledger_dir  # noqa: E402
from ledger import export, prooffile  # noqa: E402
from ledger.errors import ChainError  # noqa: E402
from tests.support import ed25519_math as ed  # noqa: E402
from tests.support import sealed_forge  # noqa: E402

# --- hard-coded key material (never use these anywhere else) ----------------------------

GATEWAY_SEED = bytes.fromhex("ccfab7c0c597056585b7adcc4329affc36a11349502999158abd094a4d9b548d")
OTHER_GATEWAY_SEED = bytes.fromhex(
    "b6fbc9397958ab26bb66c19734ac500569f48a6a6dfd617b9fb2206a8b8c0528"
)
UTILITY_SK = bytes.fromhex("0b44a382721af4e97076d91f49c4cbad663a7f883c7e37f70fae9f4672ef8417")
WRONG_UTILITY_SK = bytes.fromhex(
    "8fb86920d478d9c2515ef35cd49a847b721fcf76d6f67c7fe9a582d5b7edc00d"
)
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms


def salt(label: str, i: int) -> bytes:
    """A fixed 16-byte salt (derived, so the script stays short; still fixed bytes)."""
    return hashlib.sha256(f"salt/{label}/{i}".encode()).digest()[:16]


def ephemeral(label: str) -> bytes:
    return hashlib.sha256(f"ephemeral/{label}".encode()).digest()


def pk(seed: bytes) -> bytes:
    return bytes(nacl.signing.SigningKey(seed).verify_key)


def x25519_pk(sk: bytes) -> bytes:
    return bytes(nacl.public.PrivateKey(sk).public_key)


# --- readings ---------------------------------------------------------------------------

R = L.Reading.make
G, M = L.ClockSource.GATEWAY, L.ClockSource.METER
Q = L.Quality

EDGE_READINGS: list[L.Reading] = [
    R("gw1-meter-01", "1-0:1.8.0", 123456789, 0, "Wh", T0),
    R("gw1-meter-01", "1-0:2.8.0", -42, 0, "Wh", T0 + 1),
    R("gw1-meter-01", "1-0:32.7.0", 2304, -1, "V", T0 + 2, M, Q.METER_DST),
    R("Zähler-Ω-01", "1-0:1.7.0", -1500, -3, "kW", T0 + 3, M, Q.ROUNDED | Q.CLOCK_STEP),
    R("m", "0-0:96.1.0*255", 0, 0, "", 0),
    R("max", "255-255:255.255.255*254", 2**63 - 1, 127, "m3/h", 2**63 - 1, G, 0x1F),
    R("min", "1-0:99.97.0*1", -(2**63), -128, "%", T0 + 4, G, Q.GATEWAY_CLOCK_UNSYNCED),
    R("x" * 64, "1-0:3.8.0", 7, 3, "varh", T0 + 5, G, Q.COUNTER_RESET),
    R("電力量計", "1-0:1.8.1", 1, -9, "kWh", T0 + 6),
]


def reading_json(r: L.Reading, s: bytes) -> dict[str, Any]:
    enc = L.encode_reading(r, s)
    return {
        "meter_id": r.meter_id,
        "obis": r.obis,
        "value": r.value,
        "exponent": r.exponent,
        "unit": r.unit,
        "timestamp_ms": r.timestamp_ms,
        "clock": int(r.clock),
        "quality": int(r.quality),
        "salt": s.hex(),
        "decimal": r.decimal,
        "encoding": enc.hex(),
        "leaf_hash": L.leaf_hash(enc).hex(),
    }


def reading_fields(enc: bytes) -> list[tuple[str, int, int]]:
    """(field name, start, end) of every field of one canonical reading."""
    mlen = enc[16]
    p = 17 + mlen
    ulen = enc[p + 15]
    u = p + 16
    return [
        ("salt", 0, 16), ("meter_id_len", 16, 17), ("meter_id", 17, p), ("obis", p, p + 6),
        ("value", p + 6, p + 14), ("exponent", p + 14, p + 15), ("unit_len", p + 15, p + 16),
        ("unit", u, u + ulen), ("timestamp_ms", u + ulen, u + ulen + 8),
        ("clock", u + ulen + 8, u + ulen + 9), ("quality", u + ulen + 9, u + ulen + 11),
    ]


def outcome(fn: Callable[[], object]) -> tuple[str | None, int | None]:
    try:
        fn()
    except ChainError as exc:
        return exc.reason, exc.height
    return None, None


def readings_file() -> dict[str, Any]:
    valid = [reading_json(r, salt("edge", i)) for i, r in enumerate(EDGE_READINGS)]
    base = L.encode_reading(EDGE_READINGS[0], salt("edge", 0))
    f = dict((n, (a, b)) for n, a, b in reading_fields(base))

    def setb(off: int, value: bytes) -> bytes:
        return base[:off] + value + base[off + len(value):]

    def with_id(mid: bytes) -> bytes:
        a, b = f["meter_id"]
        return base[:16] + bytes((len(mid),)) + mid + base[b:]

    def with_unit(unit: bytes) -> bytes:
        a, b = f["unit"]
        return base[: a - 1] + bytes((len(unit),)) + unit + base[b:]

    bad = {
        "empty": b"",
        "truncated-by-one": base[:-1],
        "trailing-byte": base + b"\x00",
        "meter-id-empty": with_id(b""),
        "meter-id-65-bytes": with_id(b"x" * 65),
        "meter-id-control-char": with_id(b"gw1\nmeter"),
        "meter-id-del-char": with_id(b"gw1\x7fmeter"),
        "meter-id-bad-utf8": with_id(b"gw1-\xff"),
        "meter-id-overlong-utf8": with_id(b"\xc0\xaf"),
        "meter-id-surrogate-utf8": with_id(b"\xed\xa0\x80"),
        "unit-bad-char": with_unit(b"W h"),
        "unit-non-ascii": with_unit("µ".encode()),
        "unit-17-bytes": with_unit(b"W" * 17),
        "timestamp-top-bit": setb(f["timestamp_ms"][0], b"\x80"),
        "clock-2": setb(f["clock"][0], b"\x02"),
        "quality-unknown-bit": setb(f["quality"][0], b"\x00\x20"),
        "meter-id-len-past-end": setb(16, b"\x40"),
        "unit-len-past-end": setb(f["unit_len"][0], b"\x10"),
    }
    invalid = []
    for name, enc in bad.items():
        err, _ = outcome(lambda e=enc: L.decode_reading(e))  # type: ignore[misc]
        assert err == "malformed", name
        invalid.append({"name": name, "encoding": enc.hex(), "want_error": err})
    decimals = [{"value": v, "exponent": e, "decimal": L.format_decimal(v, e)} for v, e in (
        (2304, -1), (7, 3), (0, 0), (0, 3), (0, -2), (-5, -3), (-1, 0), (1, -9), (10, -1),
        (-100, 2), (2**63 - 1, 0), (-(2**63), -19), (-(2**63), 127), (1, -128))]
    return {"valid": valid, "invalid": invalid, "decimals": decimals}


# --- chains -----------------------------------------------------------------------------


def build_chain(
    label: str, counts: list[int], *, sealed: bool = False, seed: bytes = GATEWAY_SEED,
    first: L.Header | None = None,
) -> list[tuple[L.Block, list[L.Reading], list[bytes]]]:
    out = []
    prev = first
    t = T0 if prev is None else prev.time_end_ms
    k = 0
    for bi, n in enumerate(counts):
        readings, salts = [], []
        for i in range(n):
            base = EDGE_READINGS[k % len(EDGE_READINGS)]
            readings.append(L.Reading.make(
                base.meter_id, base.obis, base.value - k if base.value > -(2**62) else k,
                base.exponent, base.unit, t + i, base.clock, base.quality))
            salts.append(salt(label, k))
            k += 1
        t1 = t + max(n - 1, 0) + (0 if bi % 2 else 1000)
        kw: dict[str, Any] = {}
        if sealed:
            kw = {"recipient_key": x25519_pk(UTILITY_SK),
                  "ephemeral_sk": ephemeral(f"{label}/{bi}")}
        blk = L.seal_block(seed, prev, readings, salts, t, t1, **kw)
        out.append((blk, readings, salts))
        prev = blk.header
        t = t1 if bi % 2 else t1 + 5
    return out


def chain_json(name: str, chain: list[tuple[L.Block, list[L.Reading], list[bytes]]],
               sealed: bool) -> dict[str, Any]:
    blocks = []
    for blk, readings, salts in chain:
        b: dict[str, Any] = {
            "height": blk.height,
            "record": blk.encode().hex(),
            "header": blk.header.encode().hex(),
            "block_hash": blk.hash.hex(),
            "merkle_root": blk.header.merkle_root.hex(),
            "payload_hash": blk.header.payload_hash.hex(),
            "reading_count": len(readings),
            "readings": [reading_json(r, s) for r, s in zip(readings, salts, strict=True)],
        }
        if sealed:
            plain = L.encode_payload([L.encode_reading(r, s) for r, s in zip(readings, salts,
                                                                              strict=True)])
            assert L.open_payload(blk.payload, UTILITY_SK) == plain
            b["plain_payload"] = plain.hex()
            b["ephemeral_sk"] = ephemeral(f"{name}/{blk.height}").hex()
            err, _ = outcome(lambda blk=blk: L.open_block(blk, WRONG_UTILITY_SK))  # type: ignore[misc]
            assert err == "decrypt-failed"
        blocks.append(b)
    head = L.verify_records([blk.encode() for blk, _, _ in chain])
    assert head is not None
    return {
        "name": name,
        "payload_encoding": "sealed" if sealed else "plain",
        "gateway_key": pk(GATEWAY_SEED).hex(),
        "blocks": blocks,
        "head_height": head.height,
        "head_hash": head.hash.hex(),
    }


PLAIN_COUNTS = [3, 0, 5, 1, 7, 2, 17]
SEALED_COUNTS = [2, 0, 3]
BASE_COUNTS = [2, 3, 2]


def undecryptable() -> list[dict[str, Any]]:
    """Sealed genesis blocks whose ephemeral key has low order: the X25519 shared secret is
    all zeros, the box key public; a correct opener refuses them (section 5.2)."""
    chain = build_chain("sealed", SEALED_COUNTS, sealed=True)
    blk, readings, salts = chain[0]
    plain = L.encode_payload([L.encode_reading(r, s) for r, s in zip(readings, salts,
                                                                       strict=True)])
    out = []
    for name, epk in (("epk-zero", bytes(32)), ("epk-one", (1).to_bytes(32, "little"))):
        payload = sealed_forge.seal_with_zero_secret(plain, x25519_pk(UTILITY_SK), epk)
        header = dataclasses.replace(blk.header, payload_hash=L.payload_hash(payload))
        sig = nacl.signing.SigningKey(GATEWAY_SEED).sign(L.header_hash(header.encode())).signature
        forged = L.Block(header, sig, payload)
        assert L.verify_records([forged.encode()]) is not None  # integrity holds
        err, height = outcome(lambda b=forged: L.open_block(b, UTILITY_SK))  # type: ignore[misc]
        assert err == "decrypt-failed"
        out.append({"name": name, "records": [forged.encode().hex()], "plain_payload": plain.hex(),
                    "want_error": err, "want_height": height})
    return out


def chains_file() -> dict[str, Any]:
    return {
        "undecryptable": undecryptable(),
        "gateway_seed": GATEWAY_SEED.hex(),
        "gateway_key": pk(GATEWAY_SEED).hex(),
        "utility_sk": UTILITY_SK.hex(),
        "utility_pk": x25519_pk(UTILITY_SK).hex(),
        "wrong_utility_sk": WRONG_UTILITY_SK.hex(),
        "empty_merkle_root": L.EMPTY_ROOT.hex(),
        "chains": [
            chain_json("plain", build_chain("plain", PLAIN_COUNTS), False),
            chain_json("sealed", build_chain("sealed", SEALED_COUNTS, sealed=True), True),
        ],
    }


# --- corruption -------------------------------------------------------------------------

HEADER_FIELDS = [
    ("magic", 0, 4), ("version", 4, 5), ("payload_encoding", 5, 6), ("gateway_key", 6, 38),
    ("height", 38, 46), ("prev_hash", 46, 78), ("time_start_ms", 78, 86),
    ("time_end_ms", 86, 94), ("reading_count", 94, 98), ("merkle_root", 98, 130),
    ("payload_hash", 130, 162), ("recipient_key", 162, 194),
]
assert HEADER_FIELDS[-1][2] == L.HEADER_SIZE
SIG = (L.HEADER_SIZE, L.HEADER_SIZE + 64)
PLEN = (SIG[1], SIG[1] + 4)
PAYLOAD = SIG[1] + 4


def flip(data: bytes, bit: int) -> bytes:
    """Flip bit ``bit`` of ``data``; bit 0 is the most significant bit of byte 0."""
    out = bytearray(data)
    out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def resign(record: bytes, seed: bytes = GATEWAY_SEED, *, fix_payload_hash: bool) -> bytes:
    """Recompute (optionally) the payload hash and the signature of a raw record."""
    header = bytearray(record[: L.HEADER_SIZE])
    payload = record[PAYLOAD:]
    if fix_payload_hash:
        header[130:162] = L.payload_hash(payload)
    sig = nacl.signing.SigningKey(seed).sign(L.header_hash(bytes(header))).signature
    return bytes(header) + sig + record[PLEN[0]:]


def corrupt_file() -> dict[str, Any]:
    base_chain = build_chain("base", BASE_COUNTS)
    base = [b.encode() for b, _, _ in base_chain]
    fork_chain = build_chain("fork", [1], first=base_chain[0][0].header)
    fork1 = fork_chain[0][0].encode()
    other = build_chain("other", [2, 2], seed=OTHER_GATEWAY_SEED)
    sealed = [b.encode() for b, _, _ in build_chain("sealed-base", [2, 2], sealed=True)]
    vectors: list[dict[str, Any]] = []

    def add(name: str, records: list[bytes], *, pin: bytes | None = None,
            allow_valid: bool = False) -> None:
        err, height = outcome(lambda: L.verify_records(records, gateway_key=pin))
        if err is None and not allow_valid:
            raise SystemExit(f"corruption vector {name} verifies; refusing to write it")
        vectors.append({
            "name": name,
            "records": [r.hex() for r in records],
            "gateway_key": pin.hex() if pin else None,
            "want_error": err,
            "want_height": height,
        })

    def at1(rec: bytes) -> list[bytes]:
        return [base[0], rec, base[2]]

    b1 = base[1]
    for fname, a, b in HEADER_FIELDS + [("signature", *SIG), ("payload_length", *PLEN)]:
        for pos, bit in (("first-bit", a * 8), ("last-bit", b * 8 - 1)):
            add(f"header.{fname}@{pos}" if fname not in ("signature", "payload_length")
                else f"{fname}@{pos}", at1(flip(b1, bit)))
            if fname not in ("signature", "payload_length"):
                add(f"header.{fname}@{pos}+resigned",
                    at1(resign(flip(b1, bit), fix_payload_hash=False)), allow_valid=False)
    # the second reading of block 1: its length prefix and every field
    first_len = int.from_bytes(b1[PAYLOAD:PAYLOAD + 2], "big")
    r_off = PAYLOAD + 2 + first_len
    r_len = int.from_bytes(b1[r_off:r_off + 2], "big")
    enc = b1[r_off + 2: r_off + 2 + r_len]
    fields = [("length_prefix", -2, 0)] + reading_fields(enc)
    for fname, a, b in fields:
        if a == b:
            continue
        start = r_off + 2
        for pos, bit in (("first-bit", (start + a) * 8), ("last-bit", (start + b) * 8 - 1)):
            add(f"reading.{fname}@{pos}", at1(flip(b1, bit)))
            add(f"reading.{fname}@{pos}+resigned",
                at1(resign(flip(b1, bit), fix_payload_hash=True)))
    # whole-record and chain-level corruptions
    add("reordered-blocks", [base[0], base[2], base[1]])
    add("deleted-block", [base[0], base[2]])
    add("deleted-genesis", [base[1], base[2]])
    add("inserted-duplicate-block", [base[0], base[1], base[1], base[2]])
    add("inserted-fork-block", [base[0], fork1, base[1], base[2]])
    add("inserted-foreign-block", [base[0], other[1][0].encode(), base[1], base[2]])
    add("replaced-by-fork-block", [base[0], fork1, base[2]])
    add("truncated-chain@last-byte", [base[0], base[1], base[2][:-1]])
    add("truncated-chain@in-header", [base[0], base[1], base[2][:100]])
    add("truncated-chain@in-magic", [base[0], base[1], base[2][:3]])
    add("truncated-chain@before-payload", [base[0], base[1], base[2][:PAYLOAD]])
    add("trailing-garbage-after-record", [base[0], base[1] + b"\x00", base[2]])
    add("trailing-garbage-record", [*base, b"garbage"])
    add("empty-record", [base[0], b"", base[2]])
    add("height-rollback", [*base, fork1])
    add("key-substitution", at1(resign(
        b1[:6] + pk(OTHER_GATEWAY_SEED) + b1[38:], OTHER_GATEWAY_SEED, fix_payload_hash=False)))
    add("key-substitution@genesis+pinned", [other[0][0].encode()], pin=pk(GATEWAY_SEED))
    add("foreign-chain+pinned", [b.encode() for b, _, _ in other], pin=pk(GATEWAY_SEED))
    # time rules, re-signed by the real key
    h1 = bytearray(b1[: L.HEADER_SIZE])
    prev_end = int.from_bytes(base[0][86:94], "big")
    h1[78:86] = (prev_end - 1).to_bytes(8, "big")
    add("time-goes-backwards", at1(resign(bytes(h1) + b1[L.HEADER_SIZE:],
                                          fix_payload_hash=False)))
    h1 = bytearray(b1[: L.HEADER_SIZE])
    h1[86:94] = (int.from_bytes(h1[78:86], "big") - 1).to_bytes(8, "big")
    add("time-span-inverted", at1(resign(bytes(h1) + b1[L.HEADER_SIZE:], fix_payload_hash=False)))
    h1 = bytearray(b1[: L.HEADER_SIZE])
    h1[4] = 2
    add("unknown-version+resigned", at1(resign(bytes(h1) + b1[L.HEADER_SIZE:],
                                               fix_payload_hash=False)))
    # sealed payloads: integrity without the key
    s1 = sealed[1]
    add("sealed.payload@first-bit", [sealed[0], flip(s1, PAYLOAD * 8)])
    add("sealed.payload@last-bit", [sealed[0], flip(s1, len(s1) * 8 - 1)])
    add("sealed.recipient_key-zeroed+resigned", [sealed[0], resign(
        s1[:162] + bytes(32) + s1[194:], fix_payload_hash=False)])
    add("sealed.encoding-plain+resigned", [sealed[0], resign(
        s1[:5] + b"\x00" + s1[6:], fix_payload_hash=False)])
    ed25519_vectors(add, base_chain)
    return {
        "gateway_key": pk(GATEWAY_SEED).hex(),
        "base_chain": [r.hex() for r in base],
        "bit_numbering": "bit 0 is the most significant bit of the field's first byte",
        "vectors": vectors,
    }


def ed25519_vectors(add: Callable[..., None],
                    base_chain: list[tuple[L.Block, list[L.Reading], list[bytes]]]) -> None:
    """Signatures a permissive Ed25519 verifier accepts and section 6.2 refuses."""
    blocks = [b for b, _, _ in base_chain]
    b1 = blocks[1]
    msg1 = b1.hash

    def forged_chain(key: bytes) -> list[bytes]:
        # the whole base chain moved under ``key`` with one signature that fits any message
        out, prev = [], None
        for blk in blocks:
            header = dataclasses.replace(
                blk.header, gateway_key=key,
                prev_hash=L.ZERO_HASH if prev is None else L.header_hash(prev.encode()))
            sig = ed.forge_for_identity_key()
            assert ed.permissive_verify(key, L.header_hash(header.encode()), sig)
            out.append(L.Block(header, sig, blk.payload).encode())
            prev = header
        return out

    def with_sig(sig: bytes, *, cofactored: bool = False) -> list[bytes]:
        assert ed.permissive_verify(b1.header.gateway_key, msg1, sig, cofactored=cofactored)
        return [blocks[0].encode(), L.Block(b1.header, sig, b1.payload).encode(),
                blocks[2].encode()]

    identity = (1).to_bytes(32, "little")
    add("ed25519.identity-key", forged_chain(identity))
    add("ed25519.identity-key+pinned", forged_chain(identity), pin=identity)
    add("ed25519.non-canonical-key", forged_chain((ed.P + 1).to_bytes(32, "little")))
    add("ed25519.small-order-R@identity", with_sig(ed.sign_with_r(GATEWAY_SEED, identity, msg1)))
    order8 = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
    add("ed25519.small-order-R@order-8",
        with_sig(ed.sign_with_r(GATEWAY_SEED, order8, msg1), cofactored=True))
    add("ed25519.non-canonical-R",
        with_sig(ed.sign_with_r(GATEWAY_SEED, (ed.P + 1).to_bytes(32, "little"), msg1)))
    s_plus_l = int.from_bytes(b1.signature[32:], "little") + ed.L
    add("ed25519.S-plus-L", with_sig(b1.signature[:32] + s_plus_l.to_bytes(32, "little")))


# --- export files -----------------------------------------------------------------------


def export_bytes(records: list[bytes], first: int, count: int | None = None) -> bytes:
    """An export file around ``records`` (``count`` may lie, to test the framing)."""
    buf = io.BytesIO()
    export.write_export(buf, records, first, len(records))
    data = buf.getvalue()
    if count is not None:
        body = data[:20] + count.to_bytes(8, "big") + data[28:-32]
        data = body + hashlib.sha256(body).digest()
    return data


def redigest(data: bytes) -> bytes:
    """Recompute the closing digest of a (changed) export."""
    return data[:-32] + hashlib.sha256(data[:-32]).digest()


def exports_file() -> dict[str, Any]:
    base = [b.encode() for b, _, _ in build_chain("base", BASE_COUNTS)]
    key = pk(GATEWAY_SEED)
    files: list[dict[str, Any]] = []

    def add(name: str, data: bytes, *, pin: bytes | None = None, valid: bool = False) -> None:
        head: L.ChainHead | None = None
        try:
            result = export.verify_export(io.BytesIO(data), gateway_key=pin)
            err, height = None, None
            head = result.head
        except ChainError as exc:
            err, height = exc.reason, exc.height
        assert (err is None) == valid, (name, err)
        files.append({"name": name, "export": data.hex(), "gateway_key": pin.hex() if pin else None,
                      "want_error": err, "want_height": height,
                      "head_height": head.height if head else None,
                      "head_hash": head.hash.hex() if head else None})

    good = export_bytes(base, 0)
    pruned = export_bytes(base[1:], 1)
    add("valid/from-genesis", good, pin=key, valid=True)
    add("valid/pruned-first-height-1", pruned, valid=True)
    add("valid/empty", export_bytes([], 0), valid=True)
    add("valid/empty-at-height-5", export_bytes([], 5), valid=True)
    # the file header: no chain position yet
    add("file-header/empty-file", b"")
    add("file-header/truncated-in-magic", good[:5])
    add("file-header/bad-magic", b"MCEXPORX" + good[8:])
    add("file-header/truncated-in-version", good[:9])
    add("file-header/version-2", good[:8] + b"\x00\x02" + good[10:])
    add("file-header/version-2-truncated", good[:8] + b"\x00\x02")
    add("file-header/truncated", good[:20])
    add("file-header/reserved-1", redigest(good[:10] + b"\x00\x01" + good[12:]))
    add("file-header/first-height-2^63", export_bytes([], 2**63 - 1)[:12]
        + (2**63).to_bytes(8, "big") + export_bytes([], 0)[20:])
    add("file-header/count-past-2^63", redigest(export_bytes([], 2**63 - 1)[:20]
        + (2).to_bytes(8, "big") + export_bytes([], 0)[28:]))
    # framing of records: the chain position of the record
    rec1 = 28 + 4 + len(base[0])
    add("framing/length-0", redigest(good[:rec1] + bytes(4) + good[rec1 + 4:]))
    add("framing/length-261", redigest(good[:rec1] + (261).to_bytes(4, "big") + good[rec1 + 4:]))
    add("framing/length-over-limit", redigest(
        good[:rec1] + (262 + 16 * 1024 * 1024 + 1).to_bytes(4, "big") + good[rec1 + 4:]))
    add("framing/length-one-more", redigest(
        good[:rec1] + (len(base[1]) + 1).to_bytes(4, "big") + good[rec1 + 4:]))
    add("framing/truncated-in-length", good[:rec1 + 2])
    add("framing/truncated-in-record", good[:rec1 + 100])
    add("framing/count-one-more", export_bytes(base, 0, count=4))
    add("framing/count-one-less", export_bytes(base, 0, count=2))
    # the chain inside (checked before the digest)
    add("chain/record-bit-flip", good[:rec1 + 4 + 200] + bytes([good[rec1 + 4 + 200] ^ 1])
        + good[rec1 + 4 + 201:])
    add("chain/record-bit-flip+redigested", redigest(
        good[:rec1 + 4 + 200] + bytes([good[rec1 + 4 + 200] ^ 1]) + good[rec1 + 4 + 201:]))
    add("chain/wrong-key-pinned", good, pin=pk(OTHER_GATEWAY_SEED))
    at2 = export_bytes(base[2:], 2)  # announces F = 1 below: block 2 is not at F
    add("chain/pruned-first-record-not-at-F",
        redigest(at2[:12] + (1).to_bytes(8, "big") + at2[20:]))
    h1 = bytearray(base[1][: L.HEADER_SIZE])
    h1[38:46] = (2**63 + 1).to_bytes(8, "big")
    add("chain/pruned-first-record-claims-2^63+1",
        redigest(pruned[:32] + bytes(h1) + pruned[32 + L.HEADER_SIZE:]))
    h1 = bytearray(base[1][: L.HEADER_SIZE])
    h1[86:94] = (int.from_bytes(h1[78:86], "big") - 1).to_bytes(8, "big")
    inverted = resign(bytes(h1) + base[1][L.HEADER_SIZE:], fix_payload_hash=False)
    add("chain/pruned-first-record-time-inverted+resigned", export_bytes([inverted], 1))
    add("chain/pruned-first-record-bad-signature",
        export_bytes([flip(base[1], L.HEADER_SIZE * 8)], 1))
    add("chain/unknown-block-version", redigest(pruned[:32 + 4] + b"\x02" + pruned[32 + 5:]))
    # after the records
    end = len(good) - 40
    add("trailer/bad", redigest(good[:end] + b"MCEXEND\x01" + good[end + 8:]))
    add("trailer/truncated", good[:end + 4])
    add("digest/truncated", good[:-1])
    add("digest/missing", good[:-32])
    add("digest/bit-flip", good[:-1] + bytes([good[-1] ^ 1]))
    add("trailing/one-byte", good + b"\x00")
    add("trailing/second-export", good + good)
    return {"gateway_key": key.hex(), "files": files}


# --- ledger directories -----------------------------------------------------------------


def frame(record: bytes) -> bytes:
    """A segment frame (export-format.md): u32 length, u32 CRC-32 of length and record."""
    n = len(record).to_bytes(4, "big")
    return n + zlib.crc32(record, zlib.crc32(n)).to_bytes(4, "big") + record


def segment(first: int, batches: list[list[bytes]], align: int, version: int = 2) -> bytes:
    """A segment file: header, then each batch of records framed and padded to ``align``."""
    if version == 2:
        data = bytearray(b"MCSEG002" + first.to_bytes(8, "big") + align.to_bytes(4, "big")
                         + bytes(4))
    else:
        data = bytearray(b"MCSEG001" + first.to_bytes(8, "big"))
    for batch in batches:
        data += b"".join(frame(r) for r in batch)
        data += bytes(-len(data) % align)
    return bytes(data)


def ledgerdirs_file() -> dict[str, Any]:
    recs = [b.encode() for b, _, _ in build_chain("dir", [1, 2, 1, 0, 3, 1])]
    vectors: list[dict[str, Any]] = []

    def add(name: str, segments: dict[int, bytes], *, valid: bool = False) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            (d / "segments").mkdir()
            (d / "FORMAT").write_bytes(b"meterchain-ledger-v1\n")
            for first, data in segments.items():
                (d / "segments" / f"{first:020d}.seg").write_bytes(data)
            head: L.ChainHead | None = None
            try:
                head = verify_ledger_dir(d).head
                err, height = None, None
            except ChainError as exc:
                err, height = exc.reason, exc.height
        assert (err is None) == valid, (name, err)
        vectors.append({
            "name": name,
            "segments": [{"file": f"{first:020d}.seg", "bytes": data.hex()}
                         for first, data in segments.items()],
            "want_error": err, "want_height": height,
            "head_height": head.height if head else None,
            "head_hash": head.hash.hex() if head else None,
        })

    a = 512
    two = {0: segment(0, [recs[:2], recs[2:3]], a), 3: segment(3, [recs[3:6]], a)}
    add("valid/two-segments-align-512", two, valid=True)
    add("valid/align-1", {0: segment(0, [recs[:4], recs[4:]], 1)}, valid=True)
    add("valid/version-1-align-4096", {0: segment(0, [recs[:1], recs[1:3]], 4096, 1)},
        valid=True)
    add("valid/version-1-then-2", {0: segment(0, [recs[:3]], 4096, 1),
                                   3: segment(3, [recs[3:]], a)}, valid=True)
    add("valid/pruned-first-segment-at-3", {3: segment(3, [recs[3:5], recs[5:]], a)},
        valid=True)
    add("valid/padding-cut-by-end-of-file", {0: segment(0, [recs[:2]], a)[:-3]}, valid=True)
    add("valid/empty-ledger", {}, valid=True)
    last = two[3]
    add("tail/torn-frame", {0: two[0], 3: last + frame(recs[5])[:100]})
    add("tail/garbage", {0: two[0], 3: last + b"garbage!"})
    add("tail/non-zero-padding", {0: two[0], 3: last[:-1] + b"\x01"})
    add("tail/four-zero-bytes-align-1", {0: segment(0, [recs[:3]], 1) + bytes(4)})
    add("segment/header-only", {0: two[0], 3: last, 6: segment(6, [], a)})
    add("segment/gap", {0: two[0], 4: segment(4, [recs[4:6]], a)})
    add("segment/bad-magic", {0: two[0], 3: b"MCSEG003" + last[8:]})
    add("segment/first-height-not-the-name", {0: two[0], 3: last[:8] + (4).to_bytes(8, "big")
                                              + last[16:]})
    add("segment/align-0", {0: two[0], 3: last[:16] + bytes(4) + last[20:]})
    add("segment/reserved-1", {0: two[0], 3: last[:20] + (1).to_bytes(4, "big") + last[24:]})
    add("segment/truncated-header", {0: two[0], 3: last[:20]})
    s0 = bytearray(two[0])
    s0[24 + 8 + 300] ^= 0x01  # inside genesis, CRC left as it was
    add("frame/crc-mismatch", {0: bytes(s0), 3: last})
    add("frame/length-0-align-1", {0: segment(0, [recs[:1]], 1)[:24] + bytes(4)
                                   + segment(0, [recs[:1]], 1)[28:]})
    rec = bytearray(recs[0])
    rec[98] ^= 0x01  # genesis merkle root; the CRC recomputed: section 9 decides
    add("chain/genesis-merkle-root+crc-fixed",
        {0: segment(0, [[bytes(rec), *recs[1:2]], recs[2:3]], a), 3: last})
    add("chain/records-out-of-order", {0: segment(0, [[recs[1], recs[0]]], a)})
    return {"format_text": "meterchain-ledger-v1\n", "version_1_align": 4096,
            "vectors": vectors}


# --- Merkle proofs ----------------------------------------------------------------------

TREE_SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 16, 17]


def leaf_data(i: int) -> bytes:
    return f"leaf {i}".encode()


def proof_error(data: bytes, index: int, size: int, path: list[bytes], root: bytes) -> str | None:
    try:
        L.verify_inclusion(data, index, size, path, root)
    except ChainError as exc:
        return exc.reason
    return None


def merkle_file() -> dict[str, Any]:
    roots = []
    proofs = []
    for n in [0, *TREE_SIZES]:
        leaves = [L.leaf_hash(leaf_data(i)) for i in range(n)]
        root = L.merkle_root(leaves)
        roots.append({"size": n, "root": root.hex()})
        for i in range(n):
            path = L.inclusion_proof(leaves, i)
            L.verify_inclusion(leaf_data(i), i, n, path, root)
            proofs.append({"size": n, "index": i, "leaf_data": leaf_data(i).hex(),
                           "path": [p.hex() for p in path], "root": root.hex()})
    tampered = []

    def add(name: str, data: bytes, index: int, size: int, path: list[bytes],
            root: bytes) -> None:
        err = proof_error(data, index, size, path, root)
        assert err == "bad-proof", name
        tampered.append({"name": name, "size": size, "index": index, "leaf_data": data.hex(),
                         "path": [p.hex() for p in path], "root": root.hex(),
                         "want_error": err})

    for n, i in [(7, 3), (13, 12), (16, 0), (5, 4)]:
        leaves = [L.leaf_hash(leaf_data(j)) for j in range(n)]
        root = L.merkle_root(leaves)
        path = L.inclusion_proof(leaves, i)
        d = leaf_data(i)
        tag = f"{n}/{i}"
        for k in range(len(path)):
            for bit in (0, 255):
                add(f"modified-proof@{k}/bit{bit}/{tag}", d, i, n,
                    [*path[:k], flip(path[k], bit), *path[k + 1:]], root)
        add(f"truncated-proof/{tag}", d, i, n, path[:-1], root)
        add(f"extended-proof/{tag}", d, i, n, [*path, path[-1]], root)
        add(f"extended-proof-zero/{tag}", d, i, n, [*path, bytes(32)], root)
        add(f"short-element/{tag}", d, i, n, [*path[:-1], path[-1][:31]], root)
        for j in (i - 1, i + 1):
            if 0 <= j < n:
                add(f"wrong-index-{j}/{tag}", d, j, n, path, root)
        add(f"index-out-of-range/{tag}", d, n, n, path, root)
        for m in (n - 1, n + 1, 2 * n):
            # the size comes from the signed header; some other sizes share the path shape
            if proof_error(d, i, m, path, root):
                add(f"wrong-size-{m}/{tag}", d, i, m, path, root)
        add(f"modified-leaf/{tag}", flip(d, 0), i, n, path, root)
        add(f"modified-root/{tag}", d, i, n, path, flip(root, 7))
        add(f"leaf-hash-as-data/{tag}", L.leaf_hash(d), i, n, path, root)
    return {"roots": roots, "proofs": proofs, "tampered": tampered}


# --- signed inclusion proofs and fork evidence ------------------------------------------


def proofs_file() -> dict[str, Any]:
    chain = build_chain("proofs", [5], sealed=True)
    blk = chain[0][0]
    key = pk(GATEWAY_SEED)
    items = []

    def add_raw(name: str, header: bytes, sig: bytes, index: int, reading: bytes,
                path: tuple[bytes, ...], pin: bytes | None) -> None:
        err, height = outcome(lambda: L.verify_proof_parts(header, sig, index, reading, path,
                                                           pin))
        items.append({"name": name, "header": header.hex(), "signature": sig.hex(),
                      "index": index, "reading": reading.hex(), "path": [x.hex() for x in path],
                      "gateway_key": pin.hex() if pin else None,
                      "want_error": err, "want_height": height})

    def add(name: str, p: L.InclusionProof, pin: bytes | None) -> None:
        add_raw(name, p.header.encode(), p.signature, p.index, p.encoded_reading, p.path, pin)

    for i in range(5):
        add(f"valid/{i}", L.prove_reading(blk, i, UTILITY_SK), key)
    p = L.prove_reading(blk, 2, UTILITY_SK)
    other_hdr = dataclasses.replace(p.header, height=9)
    add("signature-bit-flip", L.InclusionProof(p.header, flip(p.signature, 3), 2,
                                               p.encoded_reading, p.path), key)
    add("header-changed", L.InclusionProof(other_hdr, p.signature, 2, p.encoded_reading,
                                           p.path), key)
    add("reading-bit-flip", L.InclusionProof(p.header, p.signature, 2,
                                             flip(p.encoded_reading, 200), p.path), key)
    add("wrong-index", L.InclusionProof(p.header, p.signature, 3, p.encoded_reading, p.path),
        key)
    add("truncated-path", L.InclusionProof(p.header, p.signature, 2, p.encoded_reading,
                                           p.path[:-1]), key)
    add("other-gateway-key", p, pk(OTHER_GATEWAY_SEED))
    # a header signed by the real key over a one-leaf tree whose leaf is not canonical
    bad_reading = p.encoded_reading[:-1] + b"\xff"  # quality with unknown bits
    crafted = dataclasses.replace(p.header, reading_count=1,
                                  merkle_root=L.merkle_root([L.leaf_hash(bad_reading)]))
    crafted_sig = nacl.signing.SigningKey(GATEWAY_SEED).sign(
        L.header_hash(crafted.encode())).signature
    add("non-canonical-reading", L.InclusionProof(crafted, crafted_sig, 0, bad_reading, ()), key)
    # bare headers that do not decode (section 8.1): no height is reported
    hdr = p.header.encode()
    rest = (p.signature, 2, p.encoded_reading, p.path, key)
    add_raw("bare-header/bad-magic", b"MCHX" + hdr[4:], *rest)
    add_raw("bare-header/version-2", hdr[:4] + b"\x02" + hdr[5:], *rest)
    add_raw("bare-header/version-2-short", hdr[:4] + b"\x02", *rest)
    add_raw("bare-header/193-bytes", hdr[:-1], *rest)
    add_raw("bare-header/195-bytes", hdr + b"\x00", *rest)
    add_raw("bare-header/encoding-2", hdr[:5] + b"\x02" + hdr[6:], *rest)
    add_raw("bare-header/height-2^63", hdr[:38] + (2**63).to_bytes(8, "big") + hdr[46:], *rest)
    add_raw("bare-header/sealed-without-recipient", hdr[:162] + bytes(32), *rest)
    assert all(x["want_error"] is None for x in items[:5])
    assert all(x["want_error"] for x in items[5:])
    assert all(x["want_height"] is None for x in items if x["name"].startswith("bare-header"))

    base = build_chain("base", BASE_COUNTS)
    fork = build_chain("fork", [1], first=base[0][0].header)[0][0]
    b1 = base[1][0]
    other = build_chain("other", [2, 2], seed=OTHER_GATEWAY_SEED)[1][0]
    forks = []

    def fork_raw(name: str, a: bytes, sa: bytes, b: bytes, sb: bytes) -> None:
        try:
            h: int | None = L.verify_fork_parts(a, sa, b, sb)
            err = None
        except ChainError as exc:
            err, h = exc.reason, exc.height
        forks.append({"name": name, "header_a": a.hex(), "signature_a": sa.hex(),
                      "header_b": b.hex(), "signature_b": sb.hex(),
                      "want_error": err, "want_height": h})

    def fork_vec(name: str, a: L.Block, sa: bytes, b: L.Block, sb: bytes) -> None:
        fork_raw(name, a.header.encode(), sa, b.header.encode(), sb)

    fork_vec("fork-at-height-1", b1, b1.signature, fork, fork.signature)
    fork_vec("identical-headers", b1, b1.signature, b1, b1.signature)
    fork_vec("different-heights", b1, b1.signature, base[2][0], base[2][0].signature)
    fork_vec("different-keys", b1, b1.signature, other, other.signature)
    fork_vec("bad-signature-a", b1, flip(b1.signature, 0), fork, fork.signature)
    fork_vec("bad-signature-b", b1, b1.signature, fork, flip(fork.signature, 0))
    fork_raw("header-b-version-2", b1.header.encode(), b1.signature,
             fork.header.encode()[:4] + b"\x02" + fork.header.encode()[5:], fork.signature)
    fork_raw("header-a-truncated", b1.header.encode()[:100], b1.signature,
             fork.header.encode(), fork.signature)
    assert forks[0]["want_error"] is None and all(f["want_error"] for f in forks[1:])
    return {"gateway_key": key.hex(), "inclusion": items, "forks": forks,
            "files": proof_files(blk)}


def proof_files(blk: L.Block) -> list[dict[str, Any]]:
    """Proof files (export-format.md) as text, valid and refused, with reason and height."""
    key = pk(GATEWAY_SEED)
    good = prooffile.proof_to_json(L.prove_reading(blk, 2, UTILITY_SK))
    doc = json.loads(good)
    files = []

    def add(name: str, text: str | bytes) -> None:
        err, height = outcome(lambda: prooffile.verify_proof_text(text, key))
        raw = text.encode() if isinstance(text, str) else text
        files.append({"name": name, "file": raw.hex(), "gateway_key": key.hex(),
                      "want_error": err, "want_height": height})

    def edit(**fields: Any) -> str:
        return json.dumps({**doc, **fields}, indent=2)

    def swap(old: str, new: str) -> str:
        assert old in good, old
        return good.replace(old, new, 1)

    h = doc["height"]
    add("valid", good)
    add("valid/compact", json.dumps(doc, separators=(",", ":")))
    add("hex/uppercase-header", edit(header=doc["header"].upper()))
    add("hex/uppercase-path", edit(path=[doc["path"][0].upper(), *doc["path"][1:]]))
    add("hex/space-inside-signature", edit(signature=doc["signature"][:8] + " "
                                           + doc["signature"][8:]))
    add("hex/odd-length-reading", edit(reading=doc["reading"][:-1]))
    add("hex/0x-prefix", edit(block_hash="0x" + doc["block_hash"][2:]))
    add("hex/signature-63-bytes", edit(signature=doc["signature"][:-2]))
    add("hex/block-hash-33-bytes", edit(block_hash=doc["block_hash"] + "00"))
    add("int/index-2.0", swap('"index": 2', '"index": 2.0'))
    add("int/height-exponent", swap(f'"height": {h}', f'"height": {h}e0'))
    add("int/index-minus-0", swap('"index": 2', '"index": -0'))
    add("int/height-string", edit(height=str(h)))
    add("int/height-2^63", edit(height=2**63))
    add("int/height-2^53+1", edit(height=2**53 + 1))
    add("int/index-true", edit(index=True))
    add("json/NaN-index", swap('"index": 2', '"index": NaN'))
    add("json/duplicate-member", swap('"index": 2', '"index": 2, "index": 2'))
    add("json/extra-member", edit(comment="x"))
    add("json/missing-member", json.dumps({k: v for k, v in doc.items() if k != "path"}))
    add("json/other-format", edit(format="meterchain-inclusion-proof-v2"))
    add("json/not-an-object", "[]")
    add("json/not-json", "proof")
    add("json/utf-8-bom", b"\xef\xbb\xbf" + good.encode())
    add("json/utf-16", good.encode("utf-16"))
    add("header/version-2", edit(header=doc["header"][:8] + "02" + doc["header"][10:]))
    add("header/height-mismatch", edit(height=h + 1))
    add("header/block-hash-mismatch", edit(block_hash="00" * 32))
    add("proof/wrong-index", edit(index=3))
    add("proof/path-element-31-bytes", edit(path=[doc["path"][0][:-2], *doc["path"][1:]]))
    assert files[0]["want_error"] is None and files[1]["want_error"] is None
    assert all(f["want_error"] for f in files[2:])
    return files


VECTOR_FORMAT = 2
"""Layout of these JSON files: 2 writes 64-bit integers as strings (1 wrote numbers)."""
INT64_KEYS = frozenset({"value", "timestamp_ms", "height", "head_height", "want_height"})
"""Fields holding 64-bit integers: written as decimal strings, since JSON numbers above
2^53 lose precision in JavaScript and other parsers that read them as doubles."""


def int64_as_strings(doc: Any) -> Any:
    """``doc`` with every integer under an ``INT64_KEYS`` name turned into its decimal text."""
    if isinstance(doc, list):
        return [int64_as_strings(x) for x in doc]
    if isinstance(doc, dict):
        return {k: (str(v) if k in INT64_KEYS and isinstance(v, int) else int64_as_strings(v))
                for k, v in doc.items()}
    return doc


def write_all(out: Path) -> list[Path]:
    """Write every vector file into ``out``; return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "readings.json": readings_file(),
        "chains.json": chains_file(),
        "corrupt.json": corrupt_file(),
        "merkle.json": merkle_file(),
        "proofs.json": proofs_file(),
        "exports.json": exports_file(),
        "ledgerdirs.json": ledgerdirs_file(),
    }
    written = []
    for name, content in files.items():
        path = out / name
        content = {"vector_format": VECTOR_FORMAT, **content}
        text = json.dumps(int64_as_strings(content), indent=1, sort_keys=True,
                          ensure_ascii=False)
        path.write_text(text + "\n", encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="directory to write the vector files into (default: this one)")
    args = parser.parse_args()
    for path in write_all(args.out):
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
