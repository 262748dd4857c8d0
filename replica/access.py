"""The access check in front of every route: :mod:`replica.auth`'s table, enforced.

:class:`AccessControl` is a pure ASGI middleware (it never reads the body). It finds
the route a request would reach, looks its rule up in :data:`replica.auth.ROUTES`
and, when the rule asks for a token, checks the ``Authorization: Bearer`` token
against the hashes in storage. Requests that match no route pass on (the router
answers 404/405, which name nothing). The token is never logged or echoed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from replica.auth import Decision, decide, rule_for
from replica.storage.base import TokenRecord
from replica.tokens import check_token, parse_token_id

TokenLookup = Callable[[str], TokenRecord | None]


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str | None:
    """The path template of the route that fully matches ``scope``, or ``None``."""
    for route in routes:
        match, _child = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", ""))
    return None


def bearer(scope: Scope) -> str | None:
    """The bearer token of the request, or ``None`` when there is no such header."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                return ""
            kind, _, tok = text.partition(" ")
            return tok.strip() if kind.lower() == "bearer" else ""
    return None


async def send_refusal(send: Send, status: int, code: str, detail: str,
                       headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Answer a refusal as the protocol's JSON ``{"error", "detail"}`` and close."""
    body = json.dumps({"error": code, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})


class AccessControl:
    """ASGI middleware enforcing the access table.

    ``routes`` returns the app's routes (read per request, so routers included after
    construction are covered); ``public`` is the config's ``auth.public``;
    ``lookup`` finds a token record by id (blocking; run in a thread).
    """

    def __init__(self, app: ASGIApp, *, routes: Callable[[], Sequence[BaseRoute]],
                 public: frozenset[str], lookup: Callable[[], TokenLookup]) -> None:
        self.app = app
        self.routes = routes
        self.public = public
        self.lookup = lookup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        template = route_template(self.routes(), scope)
        if template is None:
            await self.app(scope, receive, send)
            return
        rule = rule_for(scope["method"], template)
        decision = decide(rule, self.public, None, False)
        if not decision.allowed and decision.status == 401:
            decision = await self._with_token(scope, rule)
        if decision.allowed:
            scope.setdefault("state", {})["access_rule"] = rule
            await self.app(scope, receive, send)
            return
        await self._refuse(send, decision)

    async def _with_token(self, scope: Scope, rule: Any) -> Decision:
        text = bearer(scope)
        if text is None:
            return decide(rule, self.public, None, False)
        token_id = parse_token_id(text)
        record = None
        if token_id is not None:
            record = await run_in_threadpool(self.lookup(), token_id)
        scopes = record.scopes if check_token(text, record) and record is not None else None
        return decide(rule, self.public, scopes, True)

    @staticmethod
    async def _refuse(send: Send, d: Decision) -> None:
        headers = [(b"www-authenticate", b'Bearer realm="meterchain-replica"')] \
            if d.status == 401 else []
        await send_refusal(send, d.status, d.code, d.detail, headers)


__all__ = ["AccessControl", "bearer", "route_template", "send_refusal"]
