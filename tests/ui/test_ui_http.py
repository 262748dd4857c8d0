"""The web view over plain HTTP: security headers, no inline script, CSRF refusals,
cookie flags under TLS, bounded forms, the ``[ui]``/``[audit]`` config sections."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

import replica.ui
from ledger.errors import ConfigError, ConfigErrors
from replica.app import create_app
from replica.config import ReplicaConfig, parse_config
from tests.support.browser import ServedApp, self_signed
from tests.ui.conftest import UiReplica

TEMPLATES = Path(replica.ui.__file__).parent / "templates"


def _login(client: httpx.Client, base: str, token: str) -> httpx.Response:
    return client.post(base + "/ui/login", data={"token": token},
                       headers={"Origin": base}, follow_redirects=False)


def test_templates_have_no_inline_script_or_style() -> None:
    for t in TEMPLATES.glob("*.html"):
        text = t.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), t.name
        assert "<style" not in text and " style=" not in text, t.name
        assert not re.search(r"\son[a-z]+=", text), t.name


def test_pages_carry_a_strict_csp(ui_replica: UiReplica) -> None:
    with httpx.Client() as c:
        assert _login(c, ui_replica.url, ui_replica.tokens["full"]).status_code == 303
        for path in ("/ui/login", "/ui/overview", "/ui/audit", "/ui/static/common.js"):
            r = c.get(ui_replica.url + path)
            assert r.status_code == 200, path
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            want = "no-cache" if path.startswith("/ui/static/") else "no-store"
            assert r.headers["cache-control"] == want, path


def test_login_from_another_origin_is_refused(ui_replica: UiReplica) -> None:
    for origin in ("http://evil.example", None, "null"):
        headers = {} if origin is None else {"Origin": origin}
        r = httpx.post(ui_replica.url + "/ui/login", data={"token": ui_replica.tokens["full"]},
                       headers=headers, follow_redirects=False)
        assert r.status_code == 403, origin
        assert "set-cookie" not in r.headers
        assert ui_replica.tokens["full"] not in r.text


def test_logout_needs_the_pages_csrf_token(ui_replica: UiReplica) -> None:
    with httpx.Client() as c:
        _login(c, ui_replica.url, ui_replica.tokens["full"])
        page = c.get(ui_replica.url + "/ui/overview").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        for data, origin in (({"csrf": "wrong"}, ui_replica.url), ({}, ui_replica.url),
                             ({"csrf": csrf}, "http://evil.example")):
            r = c.post(ui_replica.url + "/ui/logout", data=data, headers={"Origin": origin},
                       follow_redirects=False)
            assert r.status_code == 403
        assert c.get(ui_replica.url + "/v1/gateways").status_code == 200
        r = c.post(ui_replica.url + "/ui/logout", data={"csrf": csrf},
                   headers={"Origin": ui_replica.url}, follow_redirects=False)
        assert r.status_code == 303
        assert c.get(ui_replica.url + "/v1/gateways").status_code == 401


def test_session_cookie_does_not_authorise_writes_or_cross_site_reads(
        ui_replica: UiReplica) -> None:
    with httpx.Client() as c:
        _login(c, ui_replica.url, ui_replica.tokens["full"])
        assert c.get(ui_replica.url + "/v1/gateways").status_code == 200
        # a page on another site cannot read through the session (browsers send
        # Sec-Fetch-Site; SameSite=Strict keeps the cookie away in the first place)
        r = c.get(ui_replica.url + "/v1/gateways", headers={"Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 401


def test_an_oversized_login_form_is_not_read(ui_replica: UiReplica) -> None:
    r = httpx.post(ui_replica.url + "/ui/login", content=b"token=" + b"a" * 100_000,
                   headers={"Origin": ui_replica.url,
                            "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 401
    assert "not accepted" in r.text


def test_cookie_is_secure_under_tls(ui_replica: UiReplica, tmp_path: Path) -> None:
    served = ServedApp(create_app(ReplicaConfig(), ui_replica.storage),
                       tls=self_signed(tmp_path))
    try:
        r = httpx.post(served.url + "/ui/login", data={"token": ui_replica.tokens["full"]},
                       headers={"Origin": served.url}, follow_redirects=False, verify=False)
    finally:
        served.stop()
    assert r.status_code == 303
    attrs = [a.strip().lower() for a in r.headers["set-cookie"].split(";")]
    assert "secure" in attrs and "httponly" in attrs and "samesite=strict" in attrs
    plain = httpx.post(ui_replica.url + "/ui/login", data={"token": ui_replica.tokens["full"]},
                       headers={"Origin": ui_replica.url}, follow_redirects=False)
    assert "secure" not in [a.strip().lower() for a in plain.headers["set-cookie"].split(";")]


def test_ui_and_audit_sections_are_checked() -> None:
    cfg = parse_config({"ui": {"behind_after_s": 60, "silent_after_s": 120},
                        "audit": {"peers": ["https://b.example:8470/"], "timeout_s": 2}})
    assert cfg.ui.behind_after_s == 60 and cfg.ui.silent_after_s == 120
    assert cfg.audit.peers == ("https://b.example:8470",) and cfg.audit.timeout_s == 2.0
    for bad, key in (({"ui": {"behind_after_s": 0}}, "ui.behind_after_s"),
                     ({"ui": {"silent_after_s": 10}}, "ui.silent_after_s"),
                     ({"ui": {"colour": 1}}, "ui.colour"),
                     ({"audit": {"peers": ["ftp://x"]}}, "audit.peers"),
                     ({"audit": {"timeout_s": -1}}, "audit.timeout_s")):
        with pytest.raises((ConfigError, ConfigErrors)) as ei:
            parse_config(bad)
        assert key in str(ei.value), (bad, str(ei.value))
