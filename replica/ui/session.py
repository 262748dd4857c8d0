"""Logins of the web view: a replica token exchanged for a session cookie.

The token a user pastes into the login form is checked once (by the replica's own token
check, the same one ``/v1`` applies); the session keeps it in memory only, under a
random 256-bit id that is the cookie's value. The cookie is HttpOnly, SameSite=Strict
and Secure when the request came over TLS, so page scripts never see the token and no
other site can send it.

:class:`SessionMiddleware` lets the pages' scripts call ``/v1`` with that cookie: on a
safe request (GET, HEAD) to ``/v1/`` that carries no ``Authorization`` header but a live
session cookie, and that the browser does not mark as coming from another site
(``Sec-Fetch-Site``), it adds ``Authorization: Bearer <token>``; ``/v1`` then decides exactly
as for a script holding the token. It also puts the web view's security headers (a
strict Content-Security-Policy: no inline script or style) on every ``/ui`` response.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

COOKIE = "mc_session"

TokenCheck = Callable[[str], "frozenset[str] | None"]
"""``check(token)``: the token's scopes, or None when the replica does not accept it."""

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
UI_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)
PAGE_CACHE = (b"cache-control", b"no-store")
"""Pages carry the CSRF token: never stored."""
STATIC_CACHE = (b"cache-control", b"no-cache")
"""Static files: kept, but revalidated (ETag) on every use, so an upgrade shows at once."""


@dataclass(frozen=True, slots=True)
class Session:
    """One login: the token (never sent to the browser), its scopes and a CSRF token."""

    sid: str
    token: str
    scopes: frozenset[str]
    csrf: str
    expires: float


class SessionStore:
    """Live sessions in memory, at most ``max_sessions`` (logging in beyond drops the
    oldest), each for ``ttl_s`` seconds. Thread-safe."""

    def __init__(self, ttl_s: int, max_sessions: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def create(self, token: str, scopes: frozenset[str]) -> Session:
        s = Session(secrets.token_urlsafe(32), token, scopes, secrets.token_urlsafe(24),
                    self._clock() + self.ttl_s)
        with self._lock:
            self._by_id[s.sid] = s
            while len(self._by_id) > self.max_sessions:
                self._by_id.popitem(last=False)
        return s

    def get(self, sid: str | None) -> Session | None:
        """The live session with this id, or None (unknown or expired)."""
        if not sid:
            return None
        with self._lock:
            s = self._by_id.get(sid)
            if s is not None and s.expires <= self._clock():
                del self._by_id[sid]
                return None
            return s

    def drop(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)

    def __len__(self) -> int:
        return len(self._by_id)


def cookie_value(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The session cookie's value among raw ASGI headers, or None."""
    for name, value in headers:
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001 -- a malformed Cookie header is no session
                continue
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


class SessionMiddleware:
    """Pure ASGI middleware; see the module docstring."""

    def __init__(self, app: Any, store: SessionStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/v1/") and scope["method"] in ("GET", "HEAD"):
            headers: list[tuple[bytes, bytes]] = list(scope["headers"])
            site = next((v for n, v in headers if n == b"sec-fetch-site"), b"same-origin")
            if site in (b"same-origin", b"none") and \
                    not any(n == b"authorization" for n, _ in headers):
                sess = self.store.get(cookie_value(headers))
                if sess is not None:
                    headers.append((b"authorization", f"Bearer {sess.token}".encode()))
                    scope = dict(scope, headers=headers)
        if path == "/ui" or path.startswith("/ui/"):
            async def send_with_headers(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    cache = STATIC_CACHE if path.startswith("/ui/static/") else PAGE_CACHE
                    message = dict(message, headers=[*message.get("headers", []),
                                                     *UI_HEADERS, cache])
                await send(message)
            await self.app(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send)
