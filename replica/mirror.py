"""``meterchain replica mirror``: pull another replica's ledgers, verify them, store them here.

For every gateway the source lists and this replica has enrolled, the blocks after the
local head are fetched in pages, verified with the ledger core from the local head
(:class:`ledger.ChainVerifier`, key pinned to the gateway), and pushed into the
local replica, whose own checks apply again. Mirroring is incremental and repeatable:
a second run finds nothing new, a resend is a no-op at the replica.

A source that serves an invalid block is reported with the height and reason; the valid
blocks before it are kept and nothing from the invalid block on is stored. A source
whose copy differs from the local one at or below the local head (a fork or a tampered
copy) is reported and nothing is pushed for that gateway. Gateways this replica has not
enrolled are skipped and listed: enrollment stays the operator's decision.

The local replica is reached through a :class:`Sink`: over HTTP (:class:`HttpSink`) or
directly through its storage (the replica's service, when mirroring with ``--config``).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from ledger import Block, ChainHead, ChainVerifier
from ledger.errors import ChainError, ForwardingError, ReplicaRefused
from replica.client import EMPTY_HEAD, Head, ReplicaClient
from replica.errors import Refusal

if TYPE_CHECKING:
    from replica.config import Limits
    from replica.storage.base import Storage


class Sink(Protocol):
    """The replica blocks are mirrored into."""

    name: str

    def head(self, key: bytes) -> Head | None:
        """The local head, or None when the gateway is not enrolled here."""
        ...

    def block(self, key: bytes, height: int) -> bytes | None:
        """The local block record at ``height`` (None if not held)."""
        ...

    def push(self, key: bytes, records: Sequence[bytes]) -> Head:
        """Store consecutive verified records; return the new head.

        Raises:
            ReplicaRefused (or another MeterchainError): the local replica refused them.
        """
        ...


class HttpSink:
    """A local replica reached over protocol v1.

    A 429 ``rate-limited`` answer is waited out (its ``retry_after``, at most
    ``max_wait_s`` in all per push) and the push retried.
    """

    def __init__(self, client: ReplicaClient, *, max_wait_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.name = client.url
        self.max_wait_s = max_wait_s
        self._sleep = sleep

    def head(self, key: bytes) -> Head | None:
        try:
            return self.client.head(key)
        except ReplicaRefused as exc:
            if exc.status in (403, 404):
                return None
            raise

    def block(self, key: bytes, height: int) -> bytes | None:
        got = self.client.blocks(key, height, 1)
        return got[0] if got else None

    def push(self, key: bytes, records: Sequence[bytes]) -> Head:
        waited = 0.0
        while True:
            try:
                return self.client.push(key, records).head
            except ReplicaRefused as exc:
                wait = _retry_after(exc)
                if wait is None or waited + wait > self.max_wait_s:
                    raise
                self._sleep(wait)
                waited += wait


def _retry_after(exc: ReplicaRefused) -> float | None:
    if exc.status != 429:
        return None
    detail = exc.detail if isinstance(exc.detail, dict) else {}
    value = detail.get("retry_after", 1.0)
    return float(value) if isinstance(value, int | float) and value >= 0 else 1.0


class ServiceSink:
    """The local replica reached through its own service and storage (``--config``).

    Pushes go through :class:`replica.service.ReplicaService`, so every check the HTTP
    server makes applies; only the per-gateway rate limit is lifted (this is the
    operator's own command, not a gateway).
    """

    def __init__(self, storage: Storage, limits: Limits, name: str = "local replica") -> None:
        from replica.service import ReplicaService

        self.storage = storage
        self.name = name
        self.service = ReplicaService(storage, replace(limits, rate_per_gateway=0.0))

    def head(self, key: bytes) -> Head | None:
        rec = self.storage.gateway(key)
        if rec is None:
            return None
        return Head(rec.height, rec.head_hash) if rec.height >= 0 else EMPTY_HEAD

    def block(self, key: bytes, height: int) -> bytes | None:
        got = self.storage.blocks(key, height, 1)
        return got[0] if got else None

    def push(self, key: bytes, records: Sequence[bytes]) -> Head:
        body = json.dumps({"blocks": [base64.b64encode(r).decode("ascii") for r in records]})
        try:
            result = self.service.push(key.hex(), body.encode("ascii"))
        except Refusal as exc:
            raise ReplicaRefused(f"{exc.code}: {exc.detail}", status=exc.status,
                                 detail={"error": exc.code, "detail": exc.detail, **exc.extra},
                                 replica=self.name) from None
        head = result.head
        return EMPTY_HEAD if head is None else Head(head["height"], bytes.fromhex(head["hash"]))


@dataclass(frozen=True, slots=True)
class MirrorConfig:
    """Limits of a mirror run.

    ``push_batch``: blocks per push (keep at or under the local replica's
    ``limits.max_blocks_per_batch``).
    """

    push_batch: int = 200


STATUSES = ("copied", "up-to-date", "not-enrolled", "invalid-source", "diverged", "refused")


@dataclass(slots=True)
class GatewayResult:
    """What mirroring did for one gateway."""

    key: bytes
    status: str = "up-to-date"
    stored: int = 0
    height: int | None = None
    detail: str = ""

    def line(self) -> str:
        at = f" at height {self.height}" if self.height is not None else ""
        extra = f": {self.detail}" if self.detail else ""
        return f"{self.key.hex()[:16]}... {self.status}{at}, {self.stored} block(s) stored{extra}"


@dataclass(slots=True)
class MirrorReport:
    """Per-gateway results of one mirror run; ``ok`` unless the source misbehaved or the
    local replica refused verified blocks."""

    source: str
    results: list[GatewayResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status in ("copied", "up-to-date", "not-enrolled") for r in self.results)

    @property
    def stored(self) -> int:
        return sum(r.stored for r in self.results)


def _trusted_start(sink: Sink, source: ReplicaClient, key: bytes, local: Head,
                   res: GatewayResult) -> ChainVerifier | None:
    """A verifier positioned at the local head, or None (and ``res`` says why)."""
    if local.empty:
        return ChainVerifier(gateway_key=key)
    record = sink.block(key, local.height)
    theirs = source.blocks(key, local.height, 1)
    if record is None:
        raise ForwardingError(f"local replica lists head {local.height} for {key.hex()} "
                              "but does not serve that block", replica=sink.name)
    mine = Block.decode(record)
    if not theirs or theirs[0] != record:
        other = Block.decode(theirs[0]).hash.hex() if theirs else "no block"
        res.status, res.height = "diverged", local.height
        res.detail = (f"source holds {other} at the local head, local holds "
                      f"{mine.hash.hex()}: not mirrored (run audit)")
        return None
    return ChainVerifier(ChainHead(mine.header, mine.hash), gateway_key=key)


def mirror_gateway(source: ReplicaClient, sink: Sink, key: bytes, source_head: Head,
                   config: MirrorConfig) -> GatewayResult:
    """Copy one gateway's new blocks from ``source`` into ``sink``.

    Raises:
        ForwardingError: the source or the local replica cannot be reached.
    """
    res = GatewayResult(key)
    local = sink.head(key)
    if local is None:
        res.status, res.detail = "not-enrolled", "gateway is not enrolled on this replica"
        return res
    if source_head.height <= local.height:
        res.height = local.height
        return res
    verifier = _trusted_start(sink, source, key, local, res)
    if verifier is None:
        return res
    pending: list[bytes] = []

    def flush() -> bool:
        if not pending:
            return True
        try:
            sink.push(key, pending)
        except ReplicaRefused as exc:
            res.status, res.detail = "refused", str(exc)
            return False
        res.stored += len(pending)
        pending.clear()
        return True

    for page in source.iter_blocks(key, local.height + 1, source_head.height):
        for record in page:
            try:
                verifier.add_record(record)
            except ChainError as exc:
                flush()
                res.status, res.height = "invalid-source", verifier.next_height
                res.detail = f"{exc.reason}: {exc.message}; nothing from here on was stored"
                return res
            pending.append(record)
            if len(pending) >= config.push_batch and not flush():
                return res
    if not flush():
        return res
    res.height = verifier.head.height if verifier.head else local.height
    res.status = "copied" if res.stored else "up-to-date"
    return res


def mirror(source: ReplicaClient, sink: Sink, config: MirrorConfig | None = None,
           progress: Callable[[int, int, str], None] | None = None) -> MirrorReport:
    """Mirror every gateway ``source`` lists into ``sink``.

    Raises:
        ForwardingError: a replica cannot be reached or answers outside the protocol.
    """
    config = config or MirrorConfig()
    report = MirrorReport(source.url)
    gateways = source.gateways()
    for i, info in enumerate(gateways):
        if progress:
            progress(i, len(gateways), info.key.hex()[:16])
        report.results.append(mirror_gateway(source, sink, info.key, info.head, config))
    if progress:
        progress(len(gateways), len(gateways), "done")
    return report


__all__ = ["STATUSES", "GatewayResult", "HttpSink", "MirrorConfig", "MirrorReport",
           "ServiceSink", "Sink",
           "mirror", "mirror_gateway"]
