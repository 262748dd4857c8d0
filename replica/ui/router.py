"""The ``/ui`` routes: login, logout and the page frames; static files under ``/ui/static``.

Pages need a login (303 to ``/ui/login`` otherwise). Login and logout are POST forms:
a POST whose ``Origin`` is not this server is refused (403), and logout also needs the
session's CSRF token, so no other site can log a user in or out. The frames carry no
data: each page's script fetches ``/v1`` with the session cookie
(:class:`replica.ui.session.SessionMiddleware`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from replica.config import ReplicaConfig
from replica.meterdata.calendar import DEFAULT_TZ
from replica.ui.session import COOKIE, Session, SessionMiddleware, SessionStore, TokenCheck

HERE = Path(__file__).parent
MAX_FORM_BYTES = 4096
"""Largest login or logout form read (a token is far shorter)."""

_DOC = re.compile(r"[0-9a-f]{64}")
_MEMBER = re.compile(r"[A-Za-z0-9._-]{1,128}")

PAGES = (("overview", "Overview"), ("community", "Community"), ("audit", "Audit"))
"""Navigation: (path under /ui, title)."""


def _same_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` (or, lacking one, ``Referer``) is this server."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    host = request.headers.get("host")
    if not origin or not host or origin == "null":
        return False
    return urlsplit(origin).netloc == host


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (bounded: larger bodies read as empty)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    try:
        parsed = parse_qs(body.decode("utf-8"), max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in parsed.items() if v}


def add_pages(app: FastAPI, config: ReplicaConfig, store: SessionStore,
              token_check: TokenCheck) -> None:
    """Add the page routes to ``app`` over a session store and the replica's token check.

    Routes are added to the app itself (not an included router) so that the access
    table sees each one's path template.
    """
    router = APIRouter(prefix="/ui", include_in_schema=False)
    templates = Jinja2Templates(env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True))

    def session(request: Request) -> Session | None:
        """The request's live session whose token the replica still accepts (a revoked
        token ends its sessions at the next page)."""
        sess = store.get(request.cookies.get(COOKIE))
        if sess is not None and token_check(sess.token) is None:
            store.drop(sess.sid)
            return None
        return sess

    def page(request: Request, name: str, sess: Session, **ctx: Any) -> Response:
        return templates.TemplateResponse(request, f"{name}.html", {
            "pages": PAGES, "current": name, "csrf": sess.csrf,
            "scopes": " ".join(sorted(sess.scopes)), **ctx})

    def login_page(request: Request, message: str | None, status: int = 200) -> Response:
        return templates.TemplateResponse(request, "login.html", {"message": message},
                                          status_code=status)

    @router.get("")
    def root() -> Response:
        return RedirectResponse("/ui/overview", status_code=303)

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        return login_page(request, None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        if not _same_origin(request):
            return login_page(request, "Login refused: the form was not sent from this "
                              "server (Origin check).", 403)
        token = (await _form(request)).get("token", "").strip()
        scopes = token_check(token) if token else None
        if scopes is None:
            return login_page(request, "This token is not accepted by the replica.", 401)
        sess = store.create(token, scopes)
        resp = RedirectResponse("/ui/overview", status_code=303)
        resp.set_cookie(COOKIE, sess.sid, max_age=config.ui.session_ttl_s, path="/",
                        httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
        return resp

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        sess = session(request)
        form = await _form(request)
        if sess is None or not _same_origin(request) or form.get("csrf") != sess.csrf:
            return Response("logout refused: not from this server's page", status_code=403,
                            media_type="text/plain")
        store.drop(sess.sid)
        resp = RedirectResponse("/ui/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
        return resp

    def signed_in_page(request: Request, name: str, **ctx: Any) -> Response:
        """The page ``name`` for a live session; without one, a redirect to the login."""
        sess = session(request)
        if sess is None:
            return RedirectResponse("/ui/login", status_code=303)
        return page(request, name, sess, **ctx)

    @router.get("/overview", response_class=HTMLResponse)
    def overview(request: Request) -> Response:
        return signed_in_page(request, "overview", behind_s=config.ui.behind_after_s,
                              silent_s=config.ui.silent_after_s)

    @router.get("/gateways/{key}", response_class=HTMLResponse)
    def gateway(request: Request, key: str) -> Response:
        return signed_in_page(request, "gateway", key=key, tz=DEFAULT_TZ)

    @router.get("/audit", response_class=HTMLResponse)
    def audit(request: Request) -> Response:
        return signed_in_page(request, "audit")

    @router.get("/community", response_class=HTMLResponse)
    def community(request: Request) -> Response:
        return signed_in_page(request, "community")

    @router.get("/community/{doc}/members/{member}", response_class=HTMLResponse)
    def statement(request: Request, doc: str, member: str) -> Response:
        """A member's statement, printable (its data come from ``/v1/settlements``)."""
        sess = session(request)
        if sess is None:
            return RedirectResponse("/ui/login", status_code=303)
        if not _DOC.fullmatch(doc) or not _MEMBER.fullmatch(member):
            return Response("no such statement", status_code=404, media_type="text/plain")
        return page(request, "statement", sess, doc=doc, member=member)

    for route in router.routes:
        app.router.routes.append(route)


def install_ui(app: FastAPI, config: ReplicaConfig, token_check: TokenCheck) -> SessionStore:
    """Add the web view to ``app``: pages, static files and the session middleware.

    Call after any other middleware is added, so that the session's token is in place
    before the replica's own authentication looks at a request.
    """
    store = SessionStore(config.ui.session_ttl_s, config.ui.max_sessions)
    add_pages(app, config, store, token_check)
    app.mount("/ui/static", StaticFiles(directory=str(HERE / "static")), name="ui-static")
    app.add_middleware(SessionMiddleware, store=store)
    return store
