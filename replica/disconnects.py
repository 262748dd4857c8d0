"""One info line, not a traceback, for a client that goes away mid-request.

A gateway that loses its connection while uploading (a flaky network, a killed agent)
is routine: the push is incomplete, so nothing is stored, and the gateway resends.
:class:`DisconnectLog` (ASGI middleware) logs it as one line at info level on uvicorn's
logger; :func:`client_gone` answers the ``ClientDisconnect`` a handler raises reading the
body, so no traceback reaches the log (the answer goes nowhere: the client is gone).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("uvicorn.error")
"""Shown by uvicorn at its ``--log-level info`` (what ``meterchain replica serve`` runs)."""


class DisconnectLog:
    """ASGI middleware: log a request whose client disconnected before its body ended."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        got = 0
        done = False

        async def watched() -> Message:
            nonlocal got, done
            msg = await receive()
            if msg["type"] == "http.request":
                got += len(msg.get("body", b""))
                done = not msg.get("more_body", False)
            elif msg["type"] == "http.disconnect" and not done:
                done = True  # once per request
                client = scope.get("client") or ("?", 0)
                log.info("%s %s from %s: the client disconnected after %d byte(s) of the "
                         "request body; request abandoned", scope.get("method"),
                         scope.get("path"), client[0], got)
            return msg

        await self.app(scope, watched, send)


async def client_gone(_request: Request, _exc: Exception) -> Response:
    """Exception handler for ``ClientDisconnect``: logged by :class:`DisconnectLog`."""
    return Response(status_code=400)
