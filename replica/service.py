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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger import (
    Block,
    ChainHead,
    ChainVerifier,
    Header,
    PayloadEncoding,
    check_time,
    prove_reading,
    verify_signature,
)
from ledger.errors import ChainError, MalformedError
from ledger.prooffile import proof_to_json
from replica.config import Limits
from replica.errors import Refusal, StaleHeadError
from replica.ratelimit import RateLimiter
from replica.storage.base import ForkRecord, GatewayRecord, Storage, StoredBlock

PUSH_RETRIES = 3
"""Times a push is re-verified when a concurrent push moved the head under it."""


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

    # --- lookups -------------------------------------------------------------------------

    def enrolled(self, key_hex: str) -> GatewayRecord:
        """The enrolled gateway for a key in hex.

        Raises:
            Refusal: 400 ``malformed`` key, 404 ``unknown-gateway``.
        """
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

    def push(self, key_hex: str, body: bytes) -> PushResult:
        """Verify and store a pushed batch (the body of ``POST .../blocks``).

        Raises:
            Refusal: the batch is refused; nothing from it was stored.
        """
        key = parse_key(key_hex)
        rec = self.storage.gateway(key)
        if rec is None:
            raise Refusal(403, "unknown-gateway",
                          f"gateway {key_hex} is not enrolled; ask the utility to enroll it",
                          head=None)
        wait = self.rate.take(key)
        if wait > 0:
            raise Refusal(429, "rate-limited",
                          f"more than {self.limits.rate_per_gateway:g} pushes per second from "
                          f"this gateway; retry after {wait:.2f} s", head=head_json(rec),
                          retry_after=wait)
        blocks = self._decode_batch(body, rec)
        for _ in range(PUSH_RETRIES):
            try:
                return self._push_blocks(rec, blocks)
            except StaleHeadError:
                fresh = self.storage.gateway(key)
                assert fresh is not None  # gateways are never deleted
                rec = fresh
        raise Refusal(409, "concurrent-push",
                      "the gateway's head kept moving under concurrent pushes; retry",
                      head=head_json(rec))

    def _decode_batch(self, body: bytes, rec: GatewayRecord) -> list[Block]:
        head = head_json(rec)
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
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
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise Refusal(400, "malformed", f"blocks[{i}] must be a base64 string, got "
                              f"{type(item).__name__}", head=head, index=i)
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

    def _push_blocks(self, rec: GatewayRecord, blocks: list[Block]) -> PushResult:
        head = head_json(rec)
        now = self.clock_ms()
        if not blocks:
            self.storage.touch(rec.key, now)
            return PushResult(head, 0, 0)
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
        if not new:
            self.storage.touch(rec.key, now)
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
            out.append(StoredBlock(h.height, bhash, h.time_start_ms, h.time_end_ms,
                                   h.reading_count, h.payload_encoding == PayloadEncoding.SEALED,
                                   b.encode()))
        self.storage.append(rec.key, out, rec.height, now)
        self.stored.add(len(out), sum(b.reading_count for b in out))
        return PushResult({"height": out[-1].height, "hash": out[-1].hash.hex()}, len(out),
                          duplicates)

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
                                         stored.signature, b.header.encode(), b.signature, now))
        raise Refusal(409, "fork", f"a different block is stored at height {b.height} "
                      f"(stored {stored.hash.hex()}, pushed {b.hash.hex()}); both signed "
                      "headers are kept as fork evidence", head=head, height=b.height)

    # --- reads ---------------------------------------------------------------------------

    def head(self, key_hex: str) -> dict[str, Any]:
        """``GET .../head``. Raises: Refusal (400, 404)."""
        rec = self.enrolled(key_hex)
        return head_json(rec) or {"height": -1, "hash": None}

    def blocks(self, key_hex: str, from_height: int, limit: int) -> dict[str, Any]:
        """``GET .../blocks``. Raises: Refusal (400, 404)."""
        rec = self.enrolled(key_hex)
        _check_range("from", from_height)
        if limit < 1:
            raise Refusal(400, "malformed", f"limit must be at least 1, got {limit}")
        limit = min(limit, self.limits.max_blocks_per_read)
        records = self.storage.blocks(rec.key, from_height, limit)
        return {"blocks": [base64.b64encode(r).decode("ascii") for r in records]}

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
        if not 0 <= index < block.header.reading_count:
            raise Refusal(404, "no-reading", f"block {height} has "
                          f"{block.header.reading_count} readings, no index {index}")
        sealed = block.header.payload_encoding == PayloadEncoding.SEALED
        if sealed and self.utility_sk is None:
            raise Refusal(409, "sealed", f"block {height} is sealed and this replica has no "
                          "utility secret key to open it")
        proof = prove_reading(block, index, self.utility_sk if sealed else None)
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

    def forks(self) -> dict[str, Any]:
        """``GET /v1/forks``: evidence anyone can check with ``ledger.verify_fork``."""
        def side(header: bytes, sig: bytes) -> dict[str, str]:
            return {"header": base64.b64encode(header).decode("ascii"), "signature": sig.hex()}

        return {"forks": [
            {"key": f.key.hex(), "height": f.height, "a": side(f.header_a, f.sig_a),
             "b": side(f.header_b, f.sig_b), "seen_ms": f.seen_ms}
            for f in self.storage.forks()
        ]}


MAX_QUERY_INT = 2**63 - 1
def _check_range(name: str, value: int) -> None:
    if not 0 <= value <= MAX_QUERY_INT:
        raise Refusal(400, "malformed", f"{name} must be in 0..2**63-1, got {value}")
