"""HTTP client for the replica protocol v1 (``docs/replica-api.md``).

One synchronous :class:`ReplicaClient` per replica URL, built on httpx. Every failure
is raised under :class:`~ledger.errors.ForwardingError`:

- :class:`~ledger.errors.ReplicaRefused` -- the replica answered 4xx; ``status`` and
  ``detail`` (the JSON refusal body: ``error``, ``detail``, ``head``, ...) say why.
- :class:`ReplicaServerError` -- the replica answered 5xx or a body that does not
  follow the protocol; ``status`` and ``detail`` carry what it said.
- :class:`~ledger.errors.ForwardingError` -- the replica could not be reached at all.

Keys and hashes cross this interface as ``bytes``; the wire form (lowercase hex, blocks
as base64 block records) stays inside this module.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ledger.errors import ForwardingError, ReplicaRefused


class ReplicaServerError(ForwardingError):
    """The replica answered 5xx or a body outside the protocol.

    ``status`` is the HTTP status, ``detail`` the body (parsed JSON when it was JSON).
    """

    def __init__(self, message: str, *, status: int, detail: object, replica: str | None):
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {message}", replica=replica)


@dataclass(frozen=True, slots=True)
class Head:
    """A replica's head of one gateway's chain; ``height`` -1 and ``hash`` None when empty."""

    height: int
    hash: bytes | None

    @property
    def empty(self) -> bool:
        return self.height < 0


EMPTY_HEAD = Head(-1, None)


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    """One row of ``GET /v1/gateways``."""

    key: bytes
    name: str
    site: str | None
    head: Head
    last_seen_ms: int | None
    revoked_at_ms: int | None


@dataclass(frozen=True, slots=True)
class PushResult:
    """Answer to an accepted push."""

    head: Head
    stored: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class ForkEvidence:
    """Two signed headers at one height, as served by ``GET /v1/forks``."""

    key: bytes
    height: int
    header_a: bytes
    signature_a: bytes
    header_b: bytes
    signature_b: bytes


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Limits of the client side.

    ``timeout_s``: seconds per request (connect, read, write each).
    ``page_size``: blocks asked for per range request (the replica may cap it lower).
    """

    timeout_s: float = 30.0
    page_size: int = 500


MAX_FORK_PAGES = 10_000
"""Pages of fork evidence read at most (a replica keeps a few pieces per height)."""


def _hex(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.hex()


class ReplicaClient:
    """Talks protocol v1 to one replica at ``base_url`` (e.g. ``http://127.0.0.1:8080``).

    Use as a context manager or call :meth:`close`. ``transport`` lets tests and
    embedders pass an httpx transport (e.g. ``httpx.ASGITransport``). ``token`` is an
    API token (``mct_...``) sent as ``Authorization: Bearer``; it appears in no message.
    """

    def __init__(
        self,
        base_url: str,
        config: ClientConfig | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        token: str | None = None,
    ) -> None:
        self.url = base_url.rstrip("/")
        self.config = config or ClientConfig()
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._http = httpx.Client(
            base_url=self.url, timeout=self.config.timeout_s, transport=transport,
            headers=headers,
        )

    def __enter__(self) -> ReplicaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- plumbing ----------------------------------------------------------------------

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        """Send one request; return the parsed JSON body of a 2xx answer.

        Raises:
            ReplicaRefused: 4xx. ReplicaServerError: 5xx or non-JSON body.
            ForwardingError: connection failed or timed out.
        """
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ForwardingError(
                f"{method} {path} failed: {type(exc).__name__}: {exc}", replica=self.url
            ) from exc
        try:
            body: Any = resp.json()
        except ValueError:
            body = resp.text[:500]
        if 400 <= resp.status_code < 500:
            reason = body.get("error", "refused") if isinstance(body, dict) else "refused"
            text = body.get("detail", "") if isinstance(body, dict) else str(body)
            raise ReplicaRefused(f"{method} {path}: {reason}: {text}",
                                 status=resp.status_code, detail=body, replica=self.url)
        if resp.status_code >= 300:
            raise ReplicaServerError(f"{method} {path}: unexpected status", status=resp.status_code,
                                     detail=body, replica=self.url)
        if not isinstance(body, dict):
            raise ReplicaServerError(f"{method} {path}: answer is not a JSON object",
                                     status=resp.status_code, detail=body, replica=self.url)
        return body

    def _bad(self, what: str, body: object) -> ReplicaServerError:
        return ReplicaServerError(f"answer does not follow protocol v1: {what}",
                                  status=200, detail=body, replica=self.url)

    def _head(self, obj: object) -> Head:
        if obj is None:
            return EMPTY_HEAD
        if not isinstance(obj, dict):
            raise self._bad("head is not an object", obj)
        height, hsh = obj.get("height"), obj.get("hash")
        if type(height) is not int or height < -1:
            raise self._bad("head height is not an integer >= -1", obj)
        if height == -1:
            return EMPTY_HEAD
        return Head(height, self._bytes(hsh, "head hash", 32))

    def _bytes(self, text: object, what: str, size: int | None = None) -> bytes:
        try:
            raw = bytes.fromhex(text) if isinstance(text, str) else None
        except ValueError:
            raw = None
        if raw is None or (size is not None and len(raw) != size):
            raise self._bad(f"{what} is not {size or 'some'} bytes of hex", text)
        return raw

    def _records(self, body: dict[str, Any]) -> list[bytes]:
        blocks = body.get("blocks")
        if not isinstance(blocks, list):
            raise self._bad("'blocks' is not a list", body)
        out = []
        for item in blocks:
            try:
                out.append(base64.b64decode(item, validate=True))
            except (binascii.Error, TypeError, ValueError):
                raise self._bad("a block is not base64", str(item)[:80]) from None
        return out

    # --- the protocol ------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /v1/health``. Raises ForwardingError (and subclasses)."""
        body: dict[str, Any] = self._request("GET", "/v1/health")
        return body

    def head(self, gateway: bytes | str) -> Head:
        """The replica's head of ``gateway`` (``EMPTY_HEAD`` when enrolled but empty).

        Raises:
            ReplicaRefused: 404 ``unknown-gateway`` when never enrolled.
        """
        return self._head(self._request("GET", f"/v1/gateways/{_hex(gateway)}/head"))

    def blocks(self, gateway: bytes | str, start: int, limit: int | None = None) -> list[bytes]:
        """Up to ``limit`` consecutive block records from height ``start``.

        Raises:
            ReplicaRefused, ReplicaServerError, ForwardingError.
        """
        params = {"from": start, "limit": limit or self.config.page_size}
        body = self._request("GET", f"/v1/gateways/{_hex(gateway)}/blocks", params=params)
        return self._records(body)

    def iter_blocks(
        self, gateway: bytes | str, start: int, end: int | None = None
    ) -> Iterator[list[bytes]]:
        """Pages of block records from ``start`` up to ``end`` inclusive (or the end).

        Stops at the first empty page; never yields past ``end``.
        """
        pos = start
        while end is None or pos <= end:
            want = self.config.page_size if end is None else min(self.config.page_size,
                                                                 end - pos + 1)
            page = self.blocks(gateway, pos, want)
            if not page:
                return
            page = page[:want]
            yield page
            pos += len(page)

    def block_hash(self, gateway: bytes | str, height: int) -> bytes:
        """The replica's hash of the block at ``height`` (``.../blocks/{h}/hash``).

        Raises:
            ReplicaRefused: 404 when the replica holds no block there.
        """
        body = self._request("GET", f"/v1/gateways/{_hex(gateway)}/blocks/{height}/hash")
        return self._bytes(body.get("hash"), "block hash", 32)

    def push(self, gateway: bytes | str, records: Sequence[bytes]) -> PushResult:
        """Push consecutive block records; the batch is stored whole or not at all.

        Raises:
            ReplicaRefused: the batch was refused (``detail['error']`` is the reason code,
                ``detail['head']`` the replica's head).
        """
        payload = {"blocks": [base64.b64encode(r).decode("ascii") for r in records]}
        body = self._request("POST", f"/v1/gateways/{_hex(gateway)}/blocks", json=payload)
        stored, dups = body.get("stored"), body.get("duplicates")
        if type(stored) is not int or type(dups) is not int:
            raise self._bad("'stored'/'duplicates' are not integers", body)
        return PushResult(self._head(body.get("head")), stored, dups)

    def gateways(self) -> list[GatewayInfo]:
        """Every gateway the replica knows, with its head (``GET /v1/gateways``)."""
        body = self._request("GET", "/v1/gateways")
        rows = body.get("gateways")
        if not isinstance(rows, list):
            raise self._bad("'gateways' is not a list", body)
        out = []
        for row in rows:
            if not isinstance(row, dict):
                raise self._bad("gateway row is not an object", row)
            height = row.get("height")
            head = self._head({"height": height, "hash": row.get("head_hash")})
            out.append(GatewayInfo(
                key=self._bytes(row.get("key"), "gateway key", 32),
                name=str(row.get("name", "")),
                site=row.get("site"),
                head=head,
                last_seen_ms=row.get("last_seen_ms"),
                revoked_at_ms=row.get("revoked_at_ms"),
            ))
        return out

    def forks(self) -> list[ForkEvidence]:
        """Fork evidence the replica has recorded (``GET /v1/forks``)."""
        rows: list[Any] = []
        after = ""
        for _ in range(MAX_FORK_PAGES):
            body = self._request("GET", "/v1/forks",
                                 params={"after": after} if after else None)
            page = body.get("forks")
            if not isinstance(page, list):
                raise self._bad("'forks' is not a list", body)
            rows.extend(page)
            nxt = body.get("next")
            if not nxt:
                break
            if not isinstance(nxt, str) or nxt == after:
                raise self._bad("'next' is not a new cursor", body)
            after = nxt
        out = []
        for row in rows:
            try:
                a, b = row["a"], row["b"]
                out.append(ForkEvidence(
                    key=self._bytes(row["key"], "fork key", 32),
                    height=int(row["height"]),
                    header_a=base64.b64decode(a["header"], validate=True),
                    signature_a=self._bytes(a["signature"], "signature", 64),
                    header_b=base64.b64decode(b["header"], validate=True),
                    signature_b=self._bytes(b["signature"], "signature", 64),
                ))
            except (KeyError, TypeError, ValueError, binascii.Error):
                raise self._bad("fork row lacks key/height/a/b", row) from None
        return out


__all__ = [
    "EMPTY_HEAD",
    "ClientConfig",
    "ForkEvidence",
    "GatewayInfo",
    "Head",
    "PushResult",
    "ReplicaClient",
    "ReplicaServerError",
]
