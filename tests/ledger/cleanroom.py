"""A second, independent verifier written only from docs/ledger-format.md (and, for export,
proof and ledger-directory files, docs/export-format.md).

It deliberately does not import ``agent``: it uses hashlib and libsodium (via
PyNaCl) and re-derives every rule from the spec's section numbers, so that its
agreement with the reference implementation on every test vector is evidence
that the spec alone suffices. Results are ``(reason, height)`` tuples, or ``None``
for success, instead of exceptions.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
import nacl.public

Failure = tuple[str, int | None]

ZERO32 = b"\x00" * 32
MAX_T = 2**63 - 1


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def u(data: bytes, start: int, size: int) -> int:
    return int.from_bytes(data[start : start + size], "big")


class Reject(Exception):
    """Internal: one rule failed; carries the spec's reason code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- section 3.2 ---------------------------------------------------------------------


def reading_ok(r: bytes) -> bool:
    n = len(r)
    if n < 45:
        return False
    m = r[16]
    if not 1 <= m <= 64 or n < 44 + m:
        return False
    ulen = r[32 + m]
    if n != 44 + m + ulen or ulen > 16:
        return False
    meter = r[17 : 17 + m]
    try:
        meter.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return False
    if any(b < 0x20 or b == 0x7F for b in meter):
        return False
    allowed = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789%/"
    if any(b not in allowed for b in r[33 + m : 33 + m + ulen]):
        return False
    t = 33 + m + ulen
    return u(r, t, 8) <= MAX_T and r[t + 8] in (0, 1) and u(r, t + 9, 2) & 0xFFE0 == 0


# --- section 4 -------------------------------------------------------------------------


def mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 recursive definition over leaf *data*."""
    n = len(leaves)
    if n == 0:
        return sha(b"")
    if n == 1:
        return sha(b"\x00" + leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


# --- section 5.1 -------------------------------------------------------------------------


def split(payload: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(payload):
        if len(payload) - pos < 2:
            raise Reject("malformed")
        size = u(payload, pos, 2)
        pos += 2
        if len(payload) - pos < size:
            raise Reject("malformed")
        out.append(payload[pos : pos + size])
        pos += size
    return out


# --- section 8 ---------------------------------------------------------------------------


@dataclass
class Rec:
    header: bytes
    signature: bytes
    payload: bytes

    @property
    def encoding(self) -> int:
        return self.header[5]

    @property
    def key(self) -> bytes:
        return self.header[6:38]

    @property
    def height(self) -> int:
        return u(self.header, 38, 8)

    @property
    def prev(self) -> bytes:
        return self.header[46:78]

    @property
    def t0(self) -> int:
        return u(self.header, 78, 8)

    @property
    def t1(self) -> int:
        return u(self.header, 86, 8)

    @property
    def count(self) -> int:
        return u(self.header, 94, 4)

    @property
    def root(self) -> bytes:
        return self.header[98:130]

    @property
    def payload_hash(self) -> bytes:
        return self.header[130:162]

    @property
    def block_hash(self) -> bytes:
        return sha(b"\x02" + self.header)


def check_header(h: bytes) -> None:
    if len(h) < 5 or h[:4] != b"MCHB":
        raise Reject("malformed")
    if h[4] != 1:
        raise Reject("unsupported-version")
    if len(h) != 194:
        raise Reject("malformed")
    enc, rkey, height = h[5], h[162:194], u(h, 38, 8)
    bad = (
        enc not in (0, 1)
        or (enc == 0 and rkey != ZERO32)
        or (enc == 1 and rkey == ZERO32)
        or height > MAX_T
        or (height == 0 and h[46:78] != ZERO32)
        or u(h, 78, 8) > MAX_T
        or u(h, 86, 8) > MAX_T
        or u(h, 94, 4) > 65535
    )
    if bad:
        raise Reject("malformed")


def parse(record: bytes) -> Rec:
    if len(record) < 5 or record[:4] != b"MCHB":
        raise Reject("malformed")
    if record[4] != 1:
        raise Reject("unsupported-version")
    if len(record) < 262:
        raise Reject("malformed")
    check_header(record[:194])
    plen = u(record, 258, 4)
    if plen > 16 * 1024 * 1024 or len(record) != 262 + plen:
        raise Reject("malformed")
    return Rec(record[:194], record[194:258], record[262:])


# --- sections 6.2, 9 ----------------------------------------------------------------------


ED_P = 2**255 - 19
ED_L = 2**252 + 27742317777372353535851937790883648493
SMALL_ORDER_Y = {0, 1, ED_P - 1,
                 0x05FC536D880238B13933C6D305ACDFD5F098EFF289F4C345B027B2C28F95E826,
                 0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7}


def point_ok(enc: bytes) -> bool:
    """Section 6.2: canonical (y < p) and not of small order (y not in the list)."""
    y = int.from_bytes(enc, "little") & ((1 << 255) - 1)
    return len(enc) == 32 and y < ED_P and y not in SMALL_ORDER_Y


def sig_ok(key: bytes, message: bytes, signature: bytes) -> bool:
    if len(signature) != 64 or int.from_bytes(signature[32:], "little") >= ED_L:
        return False
    if not point_ok(signature[:32]) or not point_ok(key):
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, key)
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False
    return True


def check_plain(payload: bytes, count: int, root: bytes) -> list[bytes]:
    readings = split(payload)
    if len(readings) != count:
        raise Reject("count-mismatch")
    if not all(reading_ok(r) for r in readings):
        raise Reject("malformed")
    if mth(readings) != root:
        raise Reject("merkle-mismatch")
    return readings


def verify_chain(records: Sequence[bytes], pinned: bytes | None = None, first: int = 0,
                 last: list[Rec] | None = None) -> Failure | None:
    """Section 9 from genesis (``first`` = 0) or from the trusted height ``first``.

    Returns ``None`` or ``(reason, chain position)``; ``last`` receives the head."""
    head: Rec | None = None
    key = pinned
    for i, record in enumerate(records):
        position = first + i
        try:
            b = parse(record)
            if head is None:
                if b.height != first:
                    raise Reject("height-mismatch")
            else:
                if b.height != head.height + 1:
                    raise Reject("height-mismatch")
                if b.key != head.key:
                    raise Reject("key-change")
                if b.prev != head.block_hash:
                    raise Reject("broken-link")
                if b.t0 < head.t1:
                    raise Reject("bad-time")
            if key is not None and b.key != key:
                raise Reject("key-change")
            if b.t0 > b.t1:
                raise Reject("bad-time")
            if not sig_ok(b.key, b.block_hash, b.signature):
                raise Reject("bad-signature")
            if sha(b"\x03" + b.payload) != b.payload_hash:
                raise Reject("payload-hash-mismatch")
            if b.encoding == 0:
                check_plain(b.payload, b.count, b.root)
        except Reject as exc:
            return exc.reason, position
        head, key = b, b.key
        if last is not None:
            last[:] = [b]
    return None


# --- export-format.md, "Verifying an export" ----------------------------------------------


def verify_export(data: bytes, pinned: bytes | None) -> tuple[object, object]:
    """``(reason, height)`` of the first failing check, or ``(head height, head hash hex)``
    (``(None, None)`` for an export without records)."""
    if len(data) < 8 or data[:8] != b"MCEXPORT":
        return "malformed", None
    if len(data) < 10:
        return "malformed", None
    if u(data, 8, 2) != 1:
        return "unsupported-version", None
    if len(data) < 28 or u(data, 10, 2) != 0:
        return "malformed", None
    first, count = u(data, 12, 8), u(data, 20, 8)
    if first > MAX_T or first + count > 2**63:
        return "malformed", None
    pos, records = 28, []
    last: list[Rec] = []
    for i in range(count):
        n = u(data, pos, 4) if len(data) - pos >= 4 else -1
        if not 262 <= n <= 262 + 16 * 1024 * 1024 or len(data) - pos - 4 < n:
            # checks run in file order: the records before this one are verified first
            return verify_chain(records, pinned, first) or ("malformed", first + i)
        records.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    failed = verify_chain(records, pinned, first, last)
    if failed is not None:
        return failed
    end = first + count
    if data[pos : pos + 8] != b"MCEXEND\x00" or len(data) < pos + 8 + 32:
        return "malformed", end
    if data[pos + 8 : pos + 40] != sha(data[: pos + 8]):
        return "digest-mismatch", end
    if len(data) != pos + 40:
        return "malformed", end
    return (last[0].height, last[0].block_hash.hex()) if last else (None, None)


def seal(plain: bytes, rpk: bytes, esk: bytes) -> bytes:
    """Section 5.2 step by step (HSalsa20 via crypto_box_beforenm, the secretbox via libsodium)."""
    epk = nacl.bindings.crypto_scalarmult_base(esk)
    nonce = hashlib.blake2b(epk + rpk, digest_size=24).digest()
    k = nacl.bindings.crypto_box_beforenm(rpk, esk)
    return epk + nacl.bindings.crypto_secretbox_easy(plain, nonce, k)


def open_sealed(record: bytes, utility_sk: bytes) -> list[bytes] | Failure:
    """Section 5.2 + steps 11-14 for the key holder: the block's canonical readings."""
    try:
        b = parse(record)
        plain = nacl.public.SealedBox(nacl.public.PrivateKey(utility_sk)).decrypt(b.payload)
    except Reject as exc:
        return exc.reason, None
    except nacl.exceptions.CryptoError:
        return "decrypt-failed", None
    try:
        return check_plain(plain, b.count, b.root)
    except Reject as exc:
        return exc.reason, b.height


# --- section 11 ---------------------------------------------------------------------------


def root_from_path(reading: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    if not 0 <= index < size:
        raise Reject("bad-proof")
    fn, sn, r = index, size - 1, sha(b"\x00" + reading)
    for p in path:
        if len(p) != 32 or sn == 0:
            raise Reject("bad-proof")
        if fn % 2 == 1 or fn == sn:
            r = sha(b"\x01" + p + r)
            if fn % 2 == 0:
                while fn != 0 and fn % 2 == 0:
                    fn //= 2
                    sn //= 2
        else:
            r = sha(b"\x01" + r + p)
        fn //= 2
        sn //= 2
    if sn != 0:
        raise Reject("bad-proof")
    return r


def verify_path(reading: bytes, index: int, size: int, path: Sequence[bytes],
                root: bytes) -> str | None:
    try:
        if root_from_path(reading, index, size, path) != root:
            return "bad-proof"
    except Reject as exc:
        return exc.reason
    return None


def verify_proof(header: bytes, signature: bytes, index: int, reading: bytes,
                 path: Sequence[bytes], pinned: bytes | None) -> Failure | None:
    try:
        check_header(header)
    except Reject as exc:
        return exc.reason, None
    h = Rec(header, signature, b"")
    if pinned is not None and h.key != pinned:
        return "key-change", h.height
    if not sig_ok(h.key, h.block_hash, signature):
        return "bad-signature", h.height
    why = verify_path(reading, index, h.count, path, h.root)
    if why:
        return why, h.height
    if not reading_ok(reading):
        return "malformed", h.height
    return None


# --- section 12 ---------------------------------------------------------------------------


def verify_fork(a: bytes, sa: bytes, b: bytes, sb: bytes) -> int | Failure:
    """The fork height, or ``(reason, height)``: no height when a header does not decode
    (section 8.1), header A's height after that."""
    for h in (a, b):
        try:
            check_header(h)
        except Reject as exc:
            return exc.reason, None
    ra, rb = Rec(a, sa, b""), Rec(b, sb, b"")
    if ra.key != rb.key or ra.height != rb.height or a == b:
        return "bad-fork-evidence", ra.height
    if not sig_ok(ra.key, ra.block_hash, sa) or not sig_ok(rb.key, rb.block_hash, sb):
        return "bad-signature", ra.height
    return ra.height


# --- export-format.md, "Verifying a ledger directory" ------------------------------------


def _frames(data: bytes, start: int, align: int, position: int
            ) -> tuple[list[bytes], Failure | None]:
    """The whole frames of one segment; stops at the first bytes that are not one."""
    out, pos = [], start
    while pos < len(data):
        if align > 1 and data[pos : pos + 4] == b"\x00" * 4:
            end = min(pos + (-pos % align or align), len(data))
            if any(data[pos:end]):
                return out, ("malformed", position + len(out))
            pos = end
            continue
        n = u(data, pos, 4) if len(data) - pos >= 8 else 0
        rec = data[pos + 8 : pos + 8 + n]
        if not 262 <= n <= 262 + 16 * 1024 * 1024 or len(rec) != n:
            return out, ("malformed", position + len(out))
        if zlib.crc32(data[pos : pos + 4] + rec) != u(data, pos + 4, 4):
            return out, ("malformed", position + len(out))
        out.append(rec)
        pos += 8 + n
    return out, None


def verify_segments(files: Sequence[tuple[str, bytes]], v1_align: int) -> tuple[object, object]:
    """``(reason, height)`` or ``(head height, head hash hex)`` for segment files by name."""
    files = sorted(files)
    first = int(files[0][0][:20]) if files else 0
    position, records = first, []
    last: list[Rec] = []
    for name, data in files:
        if data[:8] == b"MCSEG001" and len(data) >= 16:
            start, align = 16, v1_align
        elif data[:8] == b"MCSEG002" and len(data) >= 24 and 1 <= u(data, 16, 4) <= 1 << 20 \
                and u(data, 20, 4) == 0:
            start, align = 24, u(data, 16, 4)
        else:
            return verify_chain(records, None, first) or ("malformed", position)
        if u(data, 8, 8) != int(name[:20]):
            return verify_chain(records, None, first) or ("malformed", position)
        if u(data, 8, 8) != position:
            return verify_chain(records, None, first) or ("height-mismatch", position)
        frames, failed = _frames(data, start, align, position)
        records += frames
        position += len(frames)
        if failed is None and not frames:
            failed = ("malformed", position)
        if failed is not None:
            return verify_chain(records, None, first) or failed
    result = verify_chain(records, None, first, last)
    if result is not None:
        return result
    return (last[0].height, last[0].block_hash.hex()) if last else (None, None)


# --- export-format.md, "Inclusion proof file" ------------------------------------------------


class _Bad(Exception):
    pass


def _strict_json(raw: bytes) -> object:
    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        if len({k for k, _ in items}) != len(items):
            raise _Bad
        return dict(items)

    def integer(text: str) -> int:
        if text.startswith("-"):
            raise _Bad
        return int(text)

    def refuse(text: str) -> object:
        raise _Bad

    return json.loads(raw.decode("utf-8"), object_pairs_hook=pairs, parse_int=integer,
                      parse_float=refuse, parse_constant=refuse)


def _hexfield(v: object, size: int | None = None) -> bytes:
    if not isinstance(v, str) or any(c not in "0123456789abcdef" for c in v) or len(v) % 2:
        raise _Bad
    if size is not None and len(v) != 2 * size:
        raise _Bad
    return bytes.fromhex(v)


def verify_proof_file(raw: bytes, pinned: bytes | None) -> Failure | None:
    fields = {"format", "height", "block_hash", "index", "header", "signature", "reading",
              "path"}
    try:
        doc = _strict_json(raw)
        if not isinstance(doc, dict) or doc.get("format") != "meterchain-inclusion-proof-v1":
            raise _Bad
        if set(doc) != fields:
            raise _Bad
        for k in ("height", "index"):
            if type(doc[k]) is not int or doc[k] > MAX_T:
                raise _Bad
        block_hash = _hexfield(doc["block_hash"], 32)
        header = _hexfield(doc["header"])
        signature = _hexfield(doc["signature"], 64)
        reading = _hexfield(doc["reading"])
        if not isinstance(doc["path"], list):
            raise _Bad
        path = [_hexfield(p) for p in doc["path"]]
    except (_Bad, ValueError):  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return "malformed", None
    try:
        check_header(header)
    except Reject as exc:
        return exc.reason, None
    height = u(header, 38, 8)
    if doc["height"] != height or block_hash != sha(b"\x02" + header):
        return "malformed", height
    return verify_proof(header, signature, doc["index"], reading, path, pinned)
