"""Logins of the web view: a replica token exchanged for a session cookie.

The token a user pastes into the login form is checked (by the replica's own token
check, the same one ``/v1`` applies) and sealed with a server key into the session
cookie (:class:`SessionStore`), so every worker process knows the login. The cookie is
HttpOnly, SameSite=Strict and Secure when the request came over TLS, so page scripts
never see it and no other site can send it; without the key its content cannot be read
or made.

:class:`SessionMiddleware` lets the pages' scripts call ``/v1`` with that cookie: on a
safe request (GET, HEAD) to ``/v1/`` that carries no ``Authorization`` header but a live
session cookie, and that the browser does not mark as coming from another site
(``Sec-Fetch-Site``), it adds ``Authorization: Bearer <token>``; ``/v1`` then decides exactly
as for a script holding the token. It also puts the web view's security headers (a
strict Content-Security-Policy: no inline script or style) on every ``/ui`` response.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import nacl.exceptions
import nacl.secret
import nacl.utils

from ledger.errors import ConfigError

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
    """One login: the token (never readable by the browser), its scopes and a CSRF token.
    ``sid`` is the cookie's value."""

    sid: str
    token: str
    scopes: frozenset[str]
    csrf: str
    expires: float


SESSION_KEY_ENV = "MC_UI_SESSION_KEY"
"""64 hex characters: the key sessions are sealed with. ``meterchain replica serve`` sets
it (randomly, once per start) for all its worker processes; without it each app makes
its own."""
MAX_COOKIE = 4096
"""Longest cookie value looked at."""


def session_key() -> bytes:
    """The sealing key from :data:`SESSION_KEY_ENV`, or a new random one.

    Raises:
        ConfigError: the variable is set but not 64 hex characters.
    """
    text = os.environ.get(SESSION_KEY_ENV)
    if text is None:
        return nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != nacl.secret.SecretBox.KEY_SIZE:
        raise ConfigError(SESSION_KEY_ENV, "must be 64 hex characters (a 32-byte key)")
    return key


class SessionStore:
    """Sessions sealed into their own cookie (XSalsa20-Poly1305 with :func:`session_key`),
    so that every worker process holding the key knows every login and nothing grows
    in memory per login. A session lasts ``ttl_s`` seconds (wall clock: workers agree).

    Logging out deletes the cookie and remembers the session as ended in this process,
    at most ``max_sessions`` of them (the oldest forgotten first); with several worker
    processes another worker would still take a copy of the cookie until it expires.
    Revoking the token ends every session at once (pages and ``/v1`` check it).
    Thread-safe.
    """

    def __init__(self, ttl_s: int, max_sessions: int, key: bytes | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._box = nacl.secret.SecretBox(key if key is not None else session_key())
        self._clock = clock
        self._lock = threading.Lock()
        self._ended: OrderedDict[str, float] = OrderedDict()

    def create(self, token: str, scopes: frozenset[str]) -> Session:
        """A new session and its cookie value (``sid``)."""
        expires = self._clock() + self.ttl_s
        csrf = secrets.token_urlsafe(24)
        body = {"i": secrets.token_urlsafe(16), "t": token, "s": sorted(scopes),
                "c": csrf, "e": expires}
        sealed = self._box.encrypt(json.dumps(body, separators=(",", ":")).encode())
        sid = base64.urlsafe_b64encode(bytes(sealed)).decode("ascii").rstrip("=")
        return Session(sid, token, frozenset(scopes), csrf, expires)

    def _open(self, sid: str | None) -> dict[str, Any] | None:
        if not sid or len(sid) > MAX_COOKIE:
            return None
        try:
            raw = base64.urlsafe_b64decode(sid + "=" * (-len(sid) % 4))
            body = json.loads(self._box.decrypt(raw))
        except (ValueError, TypeError, nacl.exceptions.CryptoError):
            return None
        if not isinstance(body, dict) or not all(k in body for k in "itsce"):
            return None
        return body

    def get(self, sid: str | None) -> Session | None:
        """The live session this cookie value seals, or None (forged, expired, ended)."""
        body = self._open(sid)
        if body is None or body["e"] <= self._clock():
            return None
        with self._lock:
            if body["i"] in self._ended:
                return None
        assert sid is not None
        return Session(sid, str(body["t"]), frozenset(body["s"]), str(body["c"]),
                       float(body["e"]))

    def drop(self, sid: str) -> None:
        """End the session this cookie value seals (in this process)."""
        body = self._open(sid)
        if body is None:
            return
        now = self._clock()
        with self._lock:
            self._ended[body["i"]] = body["e"]
            for old, exp in list(self._ended.items()):
                if exp <= now:
                    del self._ended[old]
            while len(self._ended) > self.max_sessions:
                self._ended.popitem(last=False)


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
