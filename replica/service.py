"""What the replica decides: which pushed blocks to store, and what to answer.

The HTTP layer (:mod:`replica.app`) only moves bytes; every check happens here, with the
ledger core (:mod:`ledger`) as the one definition of a valid block and chain.
A push is verified completely before anything is written, and written in one
transaction, so a refused batch stores nothing (fork evidence is the one thing a
refused push may add). Refusals are :class:`~replica.errors.Refusal` with the
protocol's status, code and extra fields (``docs/replica-api.md``).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ledger import (
    Block,
    ChainHead,
    ChainVerifier,
    Header,
    PayloadEncoding,
    check_time,
    open_payload,
    prove_reading,
    split_payload,
    verify_signature,
)
from ledger.errors import ChainError, MalformedError
from ledger.prooffile import proof_to_json
from replica.config import Limits
from replica.errors import Refusal, StaleHeadError
from replica.meterdata.indexer import IndexFollower
from replica.ratelimit import RateLimiter
from replica.storage.base import ForkRecord, GatewayRecord, Storage, StoredBlock

PUSH_RETRIES = 3
"""Times a push is re-verified when a concurrent push moved the head under it."""
FORKS_PAGE = 100
MAX_FORKS_PAGE = 1000
READ_PAGE_BYTES = 1024 * 1024
"""Bytes of block records fetched from storage at once while streaming a read."""


def head_json(rec: GatewayRecord | None) -> dict[str, Any] | None:
    """The protocol's ``head`` object, or ``None`` when no block is stored."""
    if rec is None or rec.height < 0 or rec.head_hash is None:
        return None
    return {"height": rec.height, "hash": rec.head_hash.hex()}


def parse_key(text: str) -> bytes:
    """A gateway key from its 64 lowercase hex characters.

    Raises:
        Refusal: 400 ``malformed`` when it is not one.
    """
    if len(text) != 64 or text != text.lower():
        raise Refusal(400, "malformed", f"gateway key must be 64 lowercase hex characters, "
                      f"got {text[:80]!r}")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise Refusal(400, "malformed", f"gateway key is not hex: {text[:80]!r}") from None


@dataclass(frozen=True, slots=True)
class PushResult:
    """A stored (or fully duplicate) batch."""

    head: dict[str, Any] | None
    stored: int
    duplicates: int

    def json(self) -> dict[str, Any]:
        return {"head": self.head, "stored": self.stored, "duplicates": self.duplicates}


class StoreCounts:
    """Blocks and readings this process stored since it started (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.blocks = 0
        self.readings = 0

    def add(self, blocks: int, readings: int) -> None:
        with self._lock:
            self.blocks += blocks
            self.readings += readings


class ReplicaService:
    """Verifies pushes and answers reads over one :class:`Storage`.

    ``clock_ms`` gives the replica's wall clock in milliseconds (for future-time checks
    and last-seen times); ``monotonic`` gives seconds for rate limiting.
    """

    def __init__(
        self,
        storage: Storage,
        limits: Limits,
        *,
        utility_sk: bytes | None = None,
        clock_ms: Callable[[], int] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.limits = limits
        self.utility_sk = utility_sk
        self.stored = StoreCounts()
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.rate = RateLimiter(limits.rate_per_gateway, limits.rate_burst, monotonic)
        self.junk = RateLimiter(limits.junk_per_client, limits.junk_burst, monotonic)
        """Refused or unsigned pushes, per client address."""
        self.index = IndexFollower(storage, utility_sk)
        """The readings index, brought up to date after every push that stores blocks."""

    # --- lookups -------------------------------------------------------------------------

    def enrolled(self, key_hex: str) -> GatewayRecord:
        """The enrolled gateway for a key in hex, or for its name (a name shared by several
        gateways is refused: use the key).

        Raises:
            Refusal: 400 ``malformed`` key or ``ambiguous-gateway`` name,
                404 ``unknown-gateway``.
        """
        if len(key_hex) != 64 or key_hex != key_hex.lower():
            named = [g for g in self.storage.gateways() if g.name == key_hex]
            if len(named) == 1:
                return named[0]
            if len(named) > 1:
                raise Refusal(400, "ambiguous-gateway", f"{len(named)} gateways are named "
                              f"{key_hex!r}: use the key", head=None)
            if not key_hex or len(key_hex) > 200 or not key_hex.isprintable():
                parse_key(key_hex)
            if len(key_hex) != 64:
                raise Refusal(404, "unknown-gateway", f"no gateway is enrolled here under the "
                              f"name or key {key_hex[:80]!r}", head=None)
        key = parse_key(key_hex)
        rec = self.storage.gateway(key)
        if rec is None:
            raise Refusal(404, "unknown-gateway", f"gateway {key_hex} is not enrolled here",
                          head=None)
        return rec

    def current_head(self, key_hex: str) -> dict[str, Any] | None:
        """The protocol ``head`` of a gateway for a refusal (``None`` if unknown or empty)."""
        try:
            key = parse_key(key_hex)
        except Refusal:
            return None
        return head_json(self.storage.gateway(key))

    # --- push ----------------------------------------------------------------------------

    def gateway_for_push(self, key_hex: str) -> GatewayRecord:
        """The gateway a push names, checked before its body is read.

        Raises:
            Refusal: 400 ``malformed`` key; 403 ``unknown-gateway``; 403 ``revoked`` when
                the key is revoked and its stored chain already reaches the revocation
                time (block times never decrease, so no further block can be accepted).
        """
        key = parse_key(key_hex)
        rec = self.storage.gateway(key)
        if rec is None:
            raise Refusal(403, "unknown-gateway",
                          f"gateway {key_hex} is not enrolled; ask the utility to enroll it",
                          head=None, close=True)
        if rec.revoked_at_ms is not None and rec.head_header is not None:
            end = Header.decode(rec.head_header).time_end_ms
            if end >= rec.revoked_at_ms:
                raise Refusal(403, "revoked", f"the key is revoked from {rec.revoked_at_ms} "
                              "and its chain has reached that time: no block can be accepted",
                              head=head_json(rec), close=True)
        return rec

    def push(self, key_hex: str | GatewayRecord, body: bytes, client: str = "") -> PushResult:
        """Verify and store a pushed batch (the body of ``POST .../blocks``); ``key_hex``
        may be the record :meth:`gateway_for_push` already gave.

        The gateway's rate budget is charged only for a push that stores new blocks, once
        they have all verified (so nobody without the gateway's key can spend it, not even
        by replaying its blocks). Everything else -- refused, empty or fully duplicate
        batches -- is charged to the client address's junk budget, checked first.

        Raises:
            Refusal: the batch is refused; nothing from it was stored.
        """
        rec = key_hex if isinstance(key_hex, GatewayRecord) else self.gateway_for_push(key_hex)
        caller = client.encode()
        wait = self.junk.peek(caller)
        if wait > 0:
            raise Refusal(429, "rate-limited", f"too many refused or unsigned pushes from this "
                          f"address; retry after {wait:.2f} s", head=head_json(rec),
                          retry_after=wait)
        charged = False

        def charge_gateway() -> None:
            nonlocal charged
            if charged:
                return
            wait = self.rate.take(rec.key)
            if wait > 0:
                raise Refusal(429, "rate-limited",
                              f"more than {self.limits.rate_per_gateway:g} pushes per second "
                              f"from this gateway; retry after {wait:.2f} s",
                              head=head_json(rec), retry_after=wait)
            charged = True

        try:
            blocks = self._decode_batch(body, rec)
            for _ in range(PUSH_RETRIES):
                try:
                    result = self._push_blocks(rec, blocks, charge_gateway)
                    break
                except StaleHeadError:
                    fresh = self.storage.gateway(rec.key)
                    assert fresh is not None  # gateways are never deleted
                    rec = fresh
            else:
                raise Refusal(409, "concurrent-push",
                              "the gateway's head kept moving under concurrent pushes; retry",
                              head=head_json(rec))
        except Refusal as exc:
            if not charged and exc.status != 429:
                self.junk.take(caller)
            raise
        if not charged:  # stored nothing new: an empty batch or a resend
            self.junk.take(caller)
            return result
        self.index.after_push(rec.key)  # stored new blocks: index their readings
        return result

    def _decode_batch(self, body: bytes, rec: GatewayRecord) -> list[Block]:
        head = head_json(rec)
        try:
            text = body.decode("utf-8")  # json.loads(bytes) would also take UTF-16/32
        except UnicodeDecodeError:
            raise Refusal(400, "malformed", "body is not UTF-8 (JSON must be UTF-8)",
                          head=head) from None
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise Refusal(400, "malformed", f"body is not JSON: {exc}", head=head) from None
        except RecursionError:  # e.g. 50 kB of '[': nested deeper than the parser goes
            raise Refusal(400, "malformed", "body is JSON nested too deeply", head=head
                          ) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("blocks"), list):
            raise Refusal(400, "malformed", 'body must be a JSON object {"blocks": [...]}',
                          head=head)
        items = doc["blocks"]
        if len(items) > self.limits.max_blocks_per_batch:
            raise Refusal(413, "too-large", f"batch holds {len(items)} blocks, at most "
                          f"{self.limits.max_blocks_per_batch} are accepted", head=head)
        blocks = []
        max_b64 = 4 * -(-self.limits.max_block_bytes // 3)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise Refusal(400, "malformed", f"blocks[{i}] must be a base64 string, got "
                              f"{type(item).__name__}", head=head, index=i)
            if len(item) > max_b64:
                raise Refusal(413, "too-large", f"blocks[{i}] is over the "
                              f"{self.limits.max_block_bytes} bytes a block may have",
                              head=head, index=i)
            try:
                raw = base64.b64decode(item, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise Refusal(400, "malformed", f"blocks[{i}] is not base64: {exc}",
                              head=head, index=i) from None
            try:
                blocks.append(Block.decode(raw))
            except MalformedError as exc:
                raise Refusal(400, "malformed", f"blocks[{i}] does not decode: {exc.message}",
                              head=head, index=i) from None
            except ChainError as exc:
                raise Refusal(422, exc.reason, f"blocks[{i}]: {exc}", head=head, index=i,
                              height=exc.height) from None
        for i, b in enumerate(blocks):
            if b.header.gateway_key != rec.key:
                raise Refusal(422, "gateway-mismatch",
                              f"blocks[{i}] is signed by gateway {b.header.gateway_key.hex()}, "
                              f"not {rec.key.hex()}", head=head, index=i, height=b.height)
        for i in range(1, len(blocks)):
            if blocks[i].height != blocks[0].height + i:
                raise Refusal(409, "gap", f"blocks[{i}] has height {blocks[i].height}, the "
                              f"batch must be consecutive ({blocks[0].height + i} expected)",
                              head=head, expected_height=blocks[0].height + i, index=i)
        return blocks

    def _push_blocks(self, rec: GatewayRecord, blocks: list[Block],
                     charge: Callable[[], None]) -> PushResult:
        """Store the new blocks of a decoded batch; ``charge`` is called (and may refuse)
        once every new block has verified, before anything is written."""
        head = head_json(rec)
        if not blocks:  # nothing to store: answers the head, changes nothing
            return PushResult(head, 0, 0)
        now = self.clock_ms()
        if rec.revoked_at_ms is not None:
            for b in blocks:
                if b.header.time_end_ms >= rec.revoked_at_ms:
                    raise Refusal(403, "revoked",
                                  f"block {b.height} ends at {b.header.time_end_ms}, at or after "
                                  f"the key's revocation at {rec.revoked_at_ms}",
                                  head=head, height=b.height)
        first = blocks[0].height
        if first > rec.height + 1:
            raise Refusal(409, "gap", f"batch starts at height {first}; the replica holds up "
                          f"to {rec.height}, send from {rec.height + 1}", head=head,
                          expected_height=rec.height + 1)
        duplicates = self._check_existing(rec, blocks, now)
        new = blocks[duplicates:]
        if not new:  # a resend (anyone can replay signed blocks): last-seen stays
            return PushResult(head, 0, duplicates)
        stored_head = None
        if rec.head_header is not None and rec.head_hash is not None:
            stored_head = ChainHead(Header.decode(rec.head_header), rec.head_hash)
        verifier = ChainVerifier(stored_head, gateway_key=rec.key)
        out = []
        max_future = self.limits.max_future_skew_ms
        for b in new:
            try:
                check_time(b.header, now, max_future)
                bhash = verifier.add(b).hash
            except ChainError as exc:
                raise Refusal(422, exc.reason, str(exc), head=head, height=b.height) from None
            h = b.header
            lo, hi = self._reading_span(b)
            out.append(StoredBlock(h.height, bhash, h.time_start_ms, h.time_end_ms,
                                   h.reading_count, h.payload_encoding == PayloadEncoding.SEALED,
                                   b.encode(), lo, hi))
        charge()
        quota = self.limits.max_bytes_per_gateway
        adding = sum(len(b.record) for b in out)
        if quota and rec.stored_bytes + adding > quota:
            raise Refusal(507, "quota-exceeded", f"the gateway's stored blocks would take "
                          f"{rec.stored_bytes + adding} bytes, over this replica's quota of "
                          f"{quota}; nothing was stored (retry once the operator raises it)",
                          head=head)
        self.storage.append(rec.key, out, rec.height, now)
        self.stored.add(len(out), sum(b.reading_count for b in out))
        return PushResult({"height": out[-1].height, "hash": out[-1].hash.hex()}, len(out),
                          duplicates)

    def _reading_span(self, b: Block) -> tuple[int, int]:
        """Earliest and latest reading timestamp of a verified block (what exports select
        by); ``0 .. 2**63-1`` (unknown: always looked at) for a sealed block this replica
        cannot open."""
        payload = b.payload
        if b.header.payload_encoding == PayloadEncoding.SEALED:
            if self.utility_sk is None:
                return 0, MAX_QUERY_INT
            try:
                payload = open_payload(payload, self.utility_sk)
            except ChainError:
                return 0, MAX_QUERY_INT
        try:
            stamps = [int.from_bytes(e[-11:-3], "big") for e in split_payload(payload)]
        except MalformedError:
            return 0, MAX_QUERY_INT
        return (min(stamps), max(stamps)) if stamps else (0, MAX_QUERY_INT)

    def _check_existing(self, rec: GatewayRecord, blocks: list[Block], now: int) -> int:
        """Count the batch's leading blocks already stored; refuse a differing one (fork)."""
        first = blocks[0].height
        last_existing = min(blocks[-1].height, rec.height)
        if last_existing < first:
            return 0
        stored = self.storage.block_hashes(rec.key, first, last_existing)
        count = 0
        for b in blocks[: last_existing - first + 1]:
            have = stored.get(b.height)
            if have is None:  # cannot happen while heads only grow; refuse rather than guess
                raise Refusal(409, "gap", f"height {b.height} is missing from this replica",
                              head=head_json(rec), expected_height=b.height)
            if b.hash == have:
                count += 1
                continue
            self._record_fork(rec, b, now)
        return count

    def _record_fork(self, rec: GatewayRecord, b: Block, now: int) -> None:
        head = head_json(rec)
        try:
            verify_signature(b.header, b.signature)
        except ChainError as exc:
            raise Refusal(422, exc.reason, str(exc), head=head, height=b.height) from None
        records = self.storage.blocks(rec.key, b.height, 1)
        stored = Block.decode(records[0])
        self.storage.add_fork(ForkRecord(rec.key, b.height, stored.header.encode(),
                                         stored.signature, b.header.encode(), b.signature, now),
                              self.limits.max_forks_per_height)
        raise Refusal(409, "fork", f"a different block is stored at height {b.height} "
                      f"(stored {stored.hash.hex()}, pushed {b.hash.hex()}); both signed "
                      "headers are kept as fork evidence", head=head, height=b.height)

    # --- reads ---------------------------------------------------------------------------

    def head(self, key_hex: str) -> dict[str, Any]:
        """``GET .../head``. Raises: Refusal (400, 404)."""
        rec = self.enrolled(key_hex)
        return head_json(rec) or {"height": -1, "hash": None}

    def blocks(self, key_hex: str, from_height: int, limit: int) -> dict[str, Any]:
        """``GET .../blocks`` as one dict (see :meth:`blocks_json` for the streamed form).

        Raises: Refusal (400, 404)."""
        return json.loads(b"".join(self.blocks_json(key_hex, from_height, limit)))

    def blocks_json(self, key_hex: str, from_height: int, limit: int) -> Iterator[bytes]:
        """``GET .../blocks``: consecutive records from ``from_height``, at most ``limit``
        (capped by ``max_blocks_per_read``) and at most ``max_read_bytes`` of records (at
        least one block), as JSON pieces read from storage page by page.

        Raises: Refusal (400, 404) -- before the first piece is produced."""
        rec = self.enrolled(key_hex)
        _check_range("from", from_height)
        if limit < 1:
            raise Refusal(400, "malformed", f"limit must be at least 1, got {limit}")
        limit = min(limit, self.limits.max_blocks_per_read)
        sizes = self.storage.block_sizes(rec.key, from_height, limit)
        total = count = 0
        for _height, size in sizes:
            if count and total + size > self.limits.max_read_bytes:
                break
            total += size
            count += 1
        return self._stream_blocks(rec.key, from_height, [n for _, n in sizes[:count]])

    def _stream_blocks(self, key: bytes, start: int, sizes: list[int]) -> Iterator[bytes]:
        yield b'{"blocks": ['
        pos, first = 0, True
        while pos < len(sizes):
            page = 1
            budget = sizes[pos]
            while pos + page < len(sizes) and budget + sizes[pos + page] <= READ_PAGE_BYTES:
                budget += sizes[pos + page]
                page += 1
            for record in self.storage.blocks(key, start + pos, page):
                yield (b"" if first else b", ") + b'"' + base64.b64encode(record) + b'"'
                first = False
            pos += page
        yield b"]}"

    def block_hash(self, key_hex: str, height: int) -> dict[str, Any]:
        """``GET .../blocks/{height}/hash``. Raises: Refusal (400, 404 ``no-block``)."""
        rec = self.enrolled(key_hex)
        _check_range("height", height)
        got = self.storage.block_hashes(rec.key, height, height).get(height)
        if got is None:
            raise Refusal(404, "no-block", f"no block at height {height} (head is "
                          f"{rec.height})", head=head_json(rec))
        return {"height": height, "hash": got.hex()}

    def block(self, rec: GatewayRecord, height: int) -> Block:
        """The stored block at ``height``. Raises: Refusal (400, 404 ``no-block``)."""
        _check_range("height", height)
        records = self.storage.blocks(rec.key, height, 1)
        if not records:
            raise Refusal(404, "no-block", f"no block at height {height} (head is "
                          f"{rec.height})", head=head_json(rec))
        return Block.decode(records[0])

    def proof(self, key_hex: str, height: int, index: int) -> dict[str, Any]:
        """``GET .../proof``: inclusion proof of one reading, as the proof file of
        ``meterchain prove`` (``docs/export-format.md``).

        Raises:
            Refusal: 400, 404 (``unknown-gateway``, ``no-block``, ``no-reading``),
                409 ``sealed`` when the payload is sealed and no utility key is configured.
        """
        rec = self.enrolled(key_hex)
        block = self.block(rec, height)
        _check_range("index", index)
        if not 0 <= index < block.header.reading_count:
            raise Refusal(404, "no-reading", f"block {height} has "
                          f"{block.header.reading_count} readings, no index {index}")
        sealed = block.header.payload_encoding == PayloadEncoding.SEALED
        if sealed and self.utility_sk is None:
            raise Refusal(409, "sealed", f"block {height} is sealed and this replica has no "
                          "utility secret key to open it")
        try:
            proof = prove_reading(block, index, self.utility_sk if sealed else None)
        except ChainError as exc:  # sealed to another key, or contents contradict the header
            raise Refusal(422, "unreadable-block", f"block {height} cannot be opened or does "
                          f"not match its header ({exc.reason})", height=height) from None
        doc: dict[str, Any] = json.loads(proof_to_json(proof))
        return doc

    def gateways(self) -> dict[str, Any]:
        """``GET /v1/gateways``."""
        return {"gateways": [
            {"key": g.key.hex(), "name": g.name, "site": g.site, "height": g.height,
             "head_hash": None if g.head_hash is None else g.head_hash.hex(),
             "last_seen_ms": g.last_seen_ms, "revoked_at_ms": g.revoked_at_ms,
             "enrolled_ms": g.enrolled_ms}
            for g in self.storage.gateways()
        ]}

    def forks(self, after: str = "", limit: int = FORKS_PAGE) -> dict[str, Any]:
        """``GET /v1/forks``: evidence anyone can check with ``ledger.verify_fork``, a page
        at a time (``next`` is the cursor of the following page, ``null`` at the end),
        with ``total`` pieces kept and ``dropped`` ones only counted.

        Raises:
            Refusal: 400 ``malformed`` cursor or limit.
        """
        def side(header: bytes, sig: bytes) -> dict[str, str]:
            return {"header": base64.b64encode(header).decode("ascii"), "signature": sig.hex()}

        if not 1 <= limit <= MAX_FORKS_PAGE:
            raise Refusal(400, "malformed", f"limit must be 1..{MAX_FORKS_PAGE}, got {limit}")
        position = _parse_fork_cursor(after) if after else None
        page = self.storage.forks(position, limit + 1)
        more = len(page) > limit
        page = page[:limit]
        kept, dropped = self.storage.fork_counts()
        last = page[-1] if page else None
        return {"forks": [
            {"key": f.key.hex(), "height": f.height, "a": side(f.header_a, f.sig_a),
             "b": side(f.header_b, f.sig_b), "seen_ms": f.seen_ms}
            for f in page
        ], "next": f"{last.key.hex()}.{last.height}.{last.header_b.hex()}"
                   if more and last else None,
            "total": kept, "dropped": dropped}


MAX_QUERY_INT = 2**63 - 1


def _parse_fork_cursor(text: str) -> tuple[bytes, int, bytes]:
    try:
        key, height, header = text.split(".")
        out = (bytes.fromhex(key), int(height), bytes.fromhex(header))
    except ValueError:
        out = None
    if out is None or len(out[0]) != 32 or not height.isdigit() or len(out[2]) > 1024:
        raise Refusal(400, "malformed", "after must be the 'next' cursor of a previous page")
    return out
def _check_range(name: str, value: int) -> None:
    if not 0 <= value <= MAX_QUERY_INT:
        raise Refusal(400, "malformed", f"{name} must be in 0..2**63-1, got {value}")
