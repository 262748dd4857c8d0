"""Receiving push bodies with bounded memory and time.

:class:`BodyBudget` counts the bytes of request bodies held by one server process, in
total and per client address. A body is read chunk by chunk; each chunk is reserved
first, and a body that would take the process over ``max_inflight_body_bytes`` (or
its client over ``max_inflight_body_bytes_per_client``) is refused with 503 ``busy``
at once. Reservations are held until the request is answered (its verification
included), so the memory of bodies being received or verified stays bounded whatever
the number of connections. A body that takes longer than ``body_timeout_s`` to arrive
is refused with 408 ``body-timeout``.

The budget lives in the event loop of one process (no lock: only that thread touches
it); with several workers each has its own (see ``docs/replica-api.md``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from starlette.requests import ClientDisconnect, Request

from replica.config import Limits
from replica.errors import Refusal


@dataclass
class BodyBudget:
    """Bytes of bodies held now, in total and per client address."""

    total_cap: int
    client_cap: int
    total: int = 0
    clients: dict[str, int] = field(default_factory=dict)

    def reserve(self, client: str, n: int) -> bool:
        """Reserve ``n`` more bytes for ``client``; ``False`` (nothing reserved) if over."""
        held = self.clients.get(client, 0)
        if self.total + n > self.total_cap or held + n > self.client_cap:
            return False
        self.total += n
        self.clients[client] = held + n
        return True

    def release(self, client: str, n: int) -> None:
        """Give back ``n`` bytes reserved for ``client``."""
        self.total -= n
        left = self.clients.get(client, 0) - n
        if left > 0:
            self.clients[client] = left
        else:
            self.clients.pop(client, None)


def client_address(request: Request) -> str:
    """The peer's address (behind a proxy, what uvicorn's proxy-header rules give)."""
    return request.client.host if request.client is not None else "unknown"


@asynccontextmanager
async def received_body(request: Request, limits: Limits, budget: BodyBudget,
                        head: object = None) -> AsyncIterator[bytes]:
    """The request body, held within the budget until the ``async with`` block ends.

    Raises:
        Refusal: 413 ``too-large`` (over ``max_body_bytes``), 503 ``busy`` (the budget
            is spent; with ``Retry-After``), 408 ``body-timeout`` (too slow), 400
            ``malformed`` (the client went away mid-body).
    """
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refusal(413, "too-large", f"request body is over {limit} bytes", head=head,
                      close=True)
    client = client_address(request)
    held = 0
    chunks: list[bytes] = []
    try:
        try:
            async with asyncio.timeout(limits.body_timeout_s or None):
                async for chunk in request.stream():
                    if held + len(chunk) > limit:
                        raise Refusal(413, "too-large", f"request body is over {limit} bytes",
                                      head=head, close=True)
                    if not budget.reserve(client, len(chunk)):
                        raise Refusal(503, "busy", "the replica is receiving as many bodies "
                                      "as it may hold; retry later", head=head,
                                      retry_after=1, close=True)
                    held += len(chunk)
                    chunks.append(chunk)
        except TimeoutError:
            raise Refusal(408, "body-timeout", f"the body did not arrive within "
                          f"{limits.body_timeout_s:g} s", head=head, close=True) from None
        except ClientDisconnect:
            raise Refusal(400, "malformed", "the client closed the connection mid-body",
                          head=head, close=True) from None
        body = b"".join(chunks)
        chunks.clear()
        yield body
    finally:
        budget.release(client, held)
