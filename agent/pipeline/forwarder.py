"""Store-and-forward of committed blocks to one upstream replica.

Use (one :class:`Forwarder` per configured replica, each in its own asyncio task)::

    fw = Forwarder("utility", "https://replica.example:8443", store, state,
                   options=ForwarderOptions(ca_file="/etc/meterchain/ca.pem"))
    task = asyncio.create_task(fw.run(stop_event))
    ...
    fw.notify()          # after committing a block: send now instead of at the next poll
    fw.status            # dict for status/metrics (see Forwarder.status)
    stop_event.set(); await task   # returns promptly (in-flight request is aborted)

``store`` is the :class:`agent.storage.store.BlockStore` (only ``height``, ``first_height`` and
``iter_records`` / ``get_record`` are used); ``state`` is the :class:`agent.storage.state.StateDB`
(``cursor`` / ``set_cursor``). Both are touched only from the event loop's thread.
Network I/O runs in the forwarder's own worker thread, so one slow or dead replica never
holds back another replica, the poller or the sealer.

Protocol (see ``docs/replica-api.md``):

- on (re)connect, ``GET head``. The replica's head is the truth about what it holds:
  sending resumes at its height + 1 (resends are harmless, the replica stores a block
  once). If the replica is *ahead* of the local chain, or its hash at its head height is
  not the local block's hash, that is a **discrepancy**: the forwarder logs it as
  critical, stops sending to that replica for good (until restarted) and shows it in
  ``status["discrepancy"]``. The same holds for a head returned by a push that
  contradicts the local chain, and for a 409 ``fork`` refusal.
- blocks go in height order, in batches bounded by ``batch_max_bytes`` (of JSON body)
  and ``batch_max_blocks``; a 413 halves the batch bound, a 409 ``gap`` resyncs from the
  replica's head, a 429 waits for ``Retry-After``.
- while the replica is unreachable (or answers 5xx), retries back off exponentially
  with jitter, from ``backoff_initial_s`` up to ``backoff_max_s``.
- the acknowledged height is saved as the replica's cursor in the state DB (at most
  every ``cursor_flush_s`` and when stopping); it only ever lags the truth, which is
  safe for pruning. A cursor write that fails (a full disk) is logged and retried at
  the next flush; the forwarder goes on with the height in memory (``acked_height``),
  which is the truth for pruning, and ``status["cursor_error"]`` says why it is not
  saved. A lost cursor costs only resends: a (re)connect starts from the replica's head.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from agent.pipeline.backoff import backoff_delay, stopped_within
from agent.pipeline.replica_client import (
    PUSH_BODY_OVERHEAD,
    PinMismatch,
    ReplicaClient,
    ReplicaUnreachable,
    Response,
    push_body_size,
)
from ledger import HEADER_SIZE, header_hash
from ledger.errors import (
    ConfigError,
    ForwardingError,
    ReplicaDiscrepancy,
    ReplicaRefused,
    StoreError,
)

log = logging.getLogger("meterchain.forwarder")
T = TypeVar("T")


class BlockSource(Protocol):
    """What the forwarder reads from the block store."""

    @property
    def height(self) -> int: ...

    @property
    def first_height(self) -> int: ...

    def get_record(self, height: int) -> bytes: ...

    def iter_records(self, start: int, stop: int | None = None) -> Iterator[bytes]: ...


class CursorStore(Protocol):
    """Where the acknowledged height of each replica is kept."""

    def cursor(self, replica_name: str) -> int: ...

    def set_cursor(self, replica_name: str, height: int) -> None:
        """Raises StoreError when it cannot be saved (the forwarder retries later)."""


@dataclass(frozen=True, slots=True)
class ForwarderOptions:
    """Limits and trust settings of one replica's forwarder (the ``[[replicas]]`` config)."""

    ca_file: str | None = None
    """PEM CA bundle to verify the replica's certificate chain and host name."""
    pin_sha256: str | None = None
    """Hex SHA-256 of the replica certificate's SubjectPublicKeyInfo (key pinning)."""
    required: bool = True
    """Blocks are pruned only once every *required* replica acknowledged them."""
    timeout_s: float = 10.0
    """Socket timeout of each connect/read."""
    batch_max_bytes: int = 1_000_000
    """Upper bound of one push body (JSON with base64 blocks); at least one block is sent."""
    batch_max_blocks: int = 256
    """Most blocks in one push (the replica's default ``max_blocks_per_batch``)."""
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 300.0
    backoff_jitter: float = 0.5
    """Each wait is shortened by a random fraction in [0, jitter) so gateways spread out."""
    idle_poll_s: float = 2.0
    """How often to look for new blocks when nobody calls :meth:`Forwarder.notify`."""
    cursor_flush_s: float = 1.0
    """Least time between two writes of the cursor to the state DB."""

    @classmethod
    def from_config(cls, rc: Any, **overrides: Any) -> ForwarderOptions:
        """Options from an :class:`agent.service.config.ReplicaConfig` (``[[replicas]]`` entry)."""
        values: dict[str, Any] = {
            "ca_file": rc.ca_cert, "pin_sha256": rc.pinned_key_sha256,
            "required": rc.required, "timeout_s": rc.timeout_s,
            "batch_max_bytes": rc.batch_bytes, "backoff_max_s": rc.backoff_max_s,
        }
        values.update(overrides)
        return cls(**values)

    def check(self, path: str = "replicas") -> None:
        """Raises ConfigError naming the first bad field."""
        if self.pin_sha256 is not None:
            pin = self.pin_sha256.lower()
            if len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin):
                raise ConfigError(f"{path}.pin_sha256", "must be 64 hex digits (SHA-256 of "
                                  f"the server's SubjectPublicKeyInfo), got {self.pin_sha256!r}")
        for fld in ("timeout_s", "backoff_initial_s", "backoff_max_s", "idle_poll_s"):
            if getattr(self, fld) <= 0:
                raise ConfigError(f"{path}.{fld}", f"must be > 0, got {getattr(self, fld)}")
        if self.batch_max_bytes < 1024:
            raise ConfigError(f"{path}.batch_max_bytes", f"must be >= 1024, got "
                              f"{self.batch_max_bytes}")
        if self.batch_max_blocks < 1:
            raise ConfigError(f"{path}.batch_max_blocks", "must be >= 1")
        if not 0 <= self.backoff_jitter < 1:
            raise ConfigError(f"{path}.backoff_jitter", "must be in [0, 1)")


class _Transient(ForwardingError):
    """Try again later (after backoff)."""

    def __init__(self, message: str, *, replica: str | None, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message, replica=replica)


class Forwarder:
    """Forwards committed blocks to one replica; see the module docstring.

    Raises:
        ConfigError: from the constructor, for a bad URL, CA file or option.
    """

    def __init__(
        self,
        name: str,
        url: str,
        store: BlockSource,
        state: CursorStore,
        *,
        gateway_key: bytes,
        options: ForwarderOptions | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.url = url
        self.options = options or ForwarderOptions()
        self.options.check(f"replicas.{name}")
        self._store = store
        self._state = state
        self._client = ReplicaClient(
            url, gateway_key.hex(), timeout_s=self.options.timeout_s,
            ca_file=self.options.ca_file, pin_sha256=self.options.pin_sha256, name=name,
        )
        self._rng = rng or random.Random()
        self._clock = clock
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._wake = asyncio.Event()
        self._batch_bytes = self.options.batch_max_bytes
        self._acked = state.cursor(name)
        self._saved_cursor = self._acked
        self._saved_at = 0.0
        self._cursor_error: str | None = None
        self._cursor_failures = 0
        self._failures = 0
        self._hash_cache: tuple[int, bytes] | None = None
        # status fields
        self._state_name = "starting"
        self._replica_height: int | None = None
        self._last_error: str | None = None
        self._last_error_ms: int | None = None
        self._last_ok_ms: int | None = None
        self._discrepancy: dict[str, Any] | None = None
        self._sent_blocks = 0
        self._sent_bytes = 0
        self._retry_at: float | None = None

    # -- public API -----------------------------------------------------------------

    def notify(self) -> None:
        """Tell the forwarder new blocks were committed (wakes it up if idle)."""
        self._wake.set()

    @property
    def status(self) -> dict[str, Any]:
        """A JSON-ready snapshot for ``meterchain status`` and metrics.

        Keys: ``name``, ``url``, ``required``, ``state`` (``starting``, ``connecting``,
        ``sending``, ``idle``, ``backoff``, ``refused``, ``discrepancy``, ``stopped``),
        ``acked_height`` (highest height the replica confirmed, -1 none),
        ``replica_height`` (last head seen, None before contact), ``local_height``,
        ``backlog_blocks``, ``last_error``, ``last_error_ms``, ``last_success_ms``,
        ``consecutive_failures``, ``retry_in_s``, ``sent_blocks``, ``sent_bytes``,
        ``discrepancy`` (None, or ``{"height", "local_hash", "replica_hash", "detail"}``),
        ``saved_height`` (the cursor last saved in the state DB), ``cursor_error`` (None,
        or why the last save failed; the height is kept in memory meanwhile).
        """
        local = self._store.height
        retry = None
        if self._retry_at is not None:
            retry = max(0.0, round(self._retry_at - time.monotonic(), 3))
        return {
            "name": self.name,
            "url": self.url,
            "required": self.options.required,
            "state": self._state_name,
            "acked_height": self._acked,
            "replica_height": self._replica_height,
            "local_height": local,
            "backlog_blocks": max(0, local - self._acked),
            "last_error": self._last_error,
            "last_error_ms": self._last_error_ms,
            "last_success_ms": self._last_ok_ms,
            "consecutive_failures": self._failures,
            "retry_in_s": retry,
            "sent_blocks": self._sent_blocks,
            "sent_bytes": self._sent_bytes,
            "discrepancy": dict(self._discrepancy) if self._discrepancy else None,
            "saved_height": self._saved_cursor,
            "cursor_error": self._cursor_error,
        }

    @property
    def acked_height(self) -> int:
        """Highest height the replica confirmed holding (-1 for none)."""
        return self._acked

    async def run(self, stop: asyncio.Event) -> None:
        """Forward until ``stop`` is set; never raises for replica trouble.

        After a discrepancy it stops sending and just waits for ``stop`` (the status
        keeps showing the discrepancy).
        """
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"fwd-{self.name}")
        try:
            while not stop.is_set() and self._discrepancy is None:
                try:
                    await self._session(stop)
                except ReplicaDiscrepancy as exc:
                    self._set_discrepancy(exc)
                except _Transient as exc:
                    await self._backoff(stop, exc, exc.retry_after)
                except ReplicaRefused as exc:
                    self._state_name = "refused"
                    await self._backoff(stop, exc, None, level=logging.ERROR)
                except (ForwardingError, ConfigError) as exc:
                    await self._backoff(stop, exc, None, level=logging.ERROR)
            if self._discrepancy is not None and not stop.is_set():
                await stop.wait()
        finally:
            self._flush_cursor(force=True)
            self._client.abort()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._client_close_later()
            if self._discrepancy is None:
                self._state_name = "stopped"

    # -- the session ----------------------------------------------------------------

    async def _session(self, stop: asyncio.Event) -> None:
        self._state_name = "connecting"
        resp = await self._call(stop, self._client.get_head)
        if resp is None:
            return
        if resp.status != 200:
            self._raise_for(resp, "GET head")
        head = _parse_head(resp.body, self.name)
        self._check_head(head, "replica head on connect")
        if head[0] < self._acked:
            log.warning("replica %s: holds height %d but had acknowledged %d; resending",
                        self.name, head[0], self._acked)
        self._set_acked(head[0])
        self._ok()
        self._batch_bytes = self.options.batch_max_bytes  # a 413 lowers it for this session
        next_h = head[0] + 1
        while not stop.is_set():
            local = self._store.height
            if next_h > local:
                self._state_name = "idle"
                self._flush_cursor(force=True)
                await self._wait_for_work(stop)
                continue
            if next_h < self._store.first_height:
                raise ForwardingError(
                    f"replica needs height {next_h} but the local store starts at "
                    f"{self._store.first_height} (pruned); it cannot catch up from this "
                    "gateway", replica=self.name)
            self._state_name = "sending"
            records = self._batch(next_h, local)
            resp = await self._call(stop, functools.partial(self._client.push, records))
            if resp is None:
                return
            next_h = self._handle_push(resp, next_h, records)

    def _batch(self, start: int, local: int) -> list[bytes]:
        limit = self._batch_bytes - PUSH_BODY_OVERHEAD
        out: list[bytes] = []
        size = 0
        stop_h = min(local + 1, start + self.options.batch_max_blocks)
        for rec in self._store.iter_records(start, stop_h):
            n = push_body_size(len(rec))
            if out and size + n > limit:
                break
            out.append(rec)
            size += n
        if not out:
            raise ForwardingError(f"local store returned no block at height {start}",
                                  replica=self.name)
        return out

    def _handle_push(self, resp: Response, first: int, records: Sequence[bytes]) -> int:
        """Interpret a push answer; return the next height to send."""
        body = resp.body if isinstance(resp.body, dict) else {}
        if resp.status == 200:
            head = _parse_head(body.get("head"), self.name)
            last = first + len(records) - 1
            self._hash_cache = (last, header_hash(records[-1][:HEADER_SIZE]))
            self._check_head(head, "head returned by push")
            if head[0] < last:
                raise _Transient(f"push answered 200 but head {head[0]} is below the last "
                                 f"block sent ({last})", replica=self.name)
            self._sent_blocks += len(records)
            self._sent_bytes += sum(len(r) for r in records)
            self._set_acked(head[0])
            self._ok()
            return head[0] + 1
        error = body.get("error")
        if resp.status == 409 and error == "gap":
            head = _parse_head(body.get("head"), self.name)
            self._check_head(head, "head returned with a gap refusal")
            log.warning("replica %s: gap, it holds height %d; resending from %d",
                        self.name, head[0], head[0] + 1)
            self._set_acked(head[0])
            return head[0] + 1
        if resp.status == 409 and error == "fork":
            height = int(body.get("height", first))
            local = self._local_hash(height)
            raise ReplicaDiscrepancy(
                f"replica refused the block as a fork: {body.get('detail')}",
                height=height, expected=local, actual=b"", replica=self.name)
        if resp.status == 413:
            if len(records) == 1:
                raise ReplicaRefused(f"block {first} alone is too large for the replica "
                                     f"({body.get('detail')})", status=413, detail=body,
                                     replica=self.name)
            sent = PUSH_BODY_OVERHEAD + sum(push_body_size(len(r)) for r in records)
            self._batch_bytes = max(1024, min(self._batch_bytes, sent) // 2)
            log.info("replica %s: batch too large, lowering bound to %d bytes",
                     self.name, self._batch_bytes)
            return first
        self._raise_for(resp, "push")
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_for(self, resp: Response, what: str) -> None:
        body = resp.body if isinstance(resp.body, dict) else {}
        detail = body.get("detail") or body.get("error") or str(resp.body)[:200]
        if resp.status == 429 or resp.status >= 500:
            retry_after = _retry_after(resp.headers.get("retry-after"))
            raise _Transient(f"{what}: HTTP {resp.status}: {detail}", replica=self.name,
                             retry_after=retry_after)
        raise ReplicaRefused(f"{what}: {body.get('error', 'refused')}: {detail}",
                             status=resp.status, detail=body, replica=self.name)

    # -- chain checks ---------------------------------------------------------------

    def _local_hash(self, height: int) -> bytes:
        cached = self._hash_cache
        if cached is not None and cached[0] == height:
            return cached[1]
        rec = self._store.get_record(height)
        h = header_hash(rec[:HEADER_SIZE])
        self._hash_cache = (height, h)
        return h

    def _check_head(self, head: tuple[int, bytes | None], what: str) -> None:
        """Raise ReplicaDiscrepancy if the replica's head contradicts the local chain."""
        height, rhash = head
        self._replica_height = height
        if height < 0:
            return
        local_height = self._store.height
        if height > local_height:
            raise ReplicaDiscrepancy(
                f"{what}: replica is ahead of the local chain (local height {local_height})",
                height=height, expected=b"", actual=rhash or b"", replica=self.name)
        if height < self._store.first_height:
            return  # pruned locally: cannot compare; sending will report it
        local = self._local_hash(height)
        if rhash != local:
            raise ReplicaDiscrepancy(f"{what}: block hash differs", height=height,
                                     expected=local, actual=rhash or b"", replica=self.name)

    def _set_discrepancy(self, exc: ReplicaDiscrepancy) -> None:
        self._state_name = "discrepancy"
        self._discrepancy = {
            "height": exc.height,
            "local_hash": exc.expected.hex() if exc.expected else None,
            "replica_hash": exc.actual.hex() if exc.actual else None,
            "detail": str(exc),
        }
        self._error(str(exc))
        log.critical("DISCREPANCY %s; forwarding to this replica is stopped until the "
                     "operator investigates (compare with `meterchain audit`)", exc)

    # -- bookkeeping ----------------------------------------------------------------

    def _set_acked(self, height: int) -> None:
        self._acked = height
        self._flush_cursor(force=False)

    def _flush_cursor(self, *, force: bool) -> None:
        if self._acked == self._saved_cursor:
            return
        now = time.monotonic()
        if not force and now - self._saved_at < self.options.cursor_flush_s:
            return
        self._saved_at = now
        try:
            self._state.set_cursor(self.name, self._acked)
        except StoreError as exc:
            self._cursor_failures += 1
            self._cursor_error = str(exc)
            n = self._cursor_failures
            log.log(logging.ERROR if n == 1 or n % 100 == 0 else logging.DEBUG,
                    "replica %s: cannot save its cursor (height %d; kept in memory, retried "
                    "later; %d attempt(s)): %s", self.name, self._acked, n, exc)
            return
        if self._cursor_error is not None:
            log.warning("replica %s: cursor saved again (height %d) after %d failed "
                        "attempt(s)", self.name, self._acked, self._cursor_failures)
        self._cursor_error = None
        self._cursor_failures = 0
        self._saved_cursor = self._acked

    def _ok(self) -> None:
        if self._failures:
            log.info("replica %s: reachable again (height %s)", self.name, self._acked)
        self._failures = 0
        self._retry_at = None
        self._last_ok_ms = int(self._clock() * 1000)

    def _error(self, text: str) -> None:
        # Status and logs show the replica's name beside the error: do not repeat it.
        prefix = f"replica {self.name}: "
        self._last_error = text.removeprefix(prefix)
        self._last_error_ms = int(self._clock() * 1000)

    async def _backoff(self, stop: asyncio.Event, exc: Exception, retry_after: float | None,
                       *, level: int = logging.WARNING) -> None:
        self._failures += 1
        self._error(str(exc))
        if self._state_name != "refused":
            self._state_name = "backoff"
        o = self.options
        delay = backoff_delay(self._failures, o.backoff_initial_s, o.backoff_max_s,
                              o.backoff_jitter, self._rng)
        if retry_after is not None:
            delay = max(delay, min(retry_after, o.backoff_max_s))
        log.log(level if self._failures <= 3 or self._failures % 10 == 0 else logging.DEBUG,
                "%s (attempt %d; retrying in %.1f s)", exc, self._failures, delay)
        self._retry_at = time.monotonic() + delay
        await stopped_within(stop, delay)  # either way the caller looks at ``stop`` next

    async def _wait_for_work(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        if self._store.height >= self._acked + 1:
            return
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.options.idle_poll_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _call(self, stop: asyncio.Event, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` in this forwarder's thread; None if ``stop`` was set meanwhile.

        Raises:
            _Transient: the replica could not be reached / answered garbage.
            ForwardingError: the pinned key did not match.
        """
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor, fn)
        stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([fut, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not fut.done():
            self._client.abort()
            fut.add_done_callback(_consume)
            return None
        try:
            return fut.result()
        except PinMismatch:
            raise
        except ReplicaUnreachable as exc:
            raise _Transient(str(exc), replica=None) from None

    def _client_close_later(self) -> None:
        try:
            self._client.close()
        except OSError as exc:
            log.debug("replica %s: closing connection: %s", self.name, exc)


def _consume(fut: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned request's outcome so asyncio does not warn about it."""
    if not fut.cancelled():
        fut.exception()


def _parse_head(obj: Any, name: str) -> tuple[int, bytes | None]:
    """``{"height": H, "hash": hex|null}`` -> (H, bytes|None); -1 for an empty replica.

    Raises:
        _Transient: the head is missing or malformed (e.g. a mangled answer).
    """
    if obj is None:
        return -1, None
    try:
        height = int(obj["height"])
        h = obj.get("hash")
        if height < 0:
            return -1, None
        raw = bytes.fromhex(h)
        if len(raw) != 32:
            raise ValueError(f"hash is {len(raw)} bytes")
        return height, raw
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _Transient(f"replica sent a malformed head {str(obj)[:120]!r}: {exc}",
                         replica=name) from None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
