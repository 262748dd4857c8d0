"""Tokens, scopes and the deny-by-default route table, against a live replica.

For every route and every kind of caller (no token, malformed, unknown, revoked, each
scope, every scope) the answer is the one the table in ``replica/auth.py`` says, and no
refusal shows a reading, a token or a path. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from starlette.routing import Mount

from replica.app import create_app
from replica.auth import READ_CHAIN, READ_READINGS, ROUTES, SCOPES, Rule
from replica.config import ReplicaConfig
from replica.tokens import create_token
from tests.replica.conftest import RunningReplica, StorageFactory, enroll
from tests.support import communitydata
from tests.support.chains import make_chain

DOC = Path(__file__).resolve().parents[3] / "docs" / "replica-api.md"
SEED = b"access-gw"
METER = "secret-meter-4711"


def doc_table() -> dict[tuple[str, str], str]:
    text = DOC.read_text()
    body = text.split("<!-- access-table:start -->")[1].split("<!-- access-table:end -->")[0]
    rows = {}
    for line in body.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        method, path, access = cells
        rows[(method, path.strip("`"))] = access
    return rows


def test_the_doc_table_is_the_code_table() -> None:
    assert doc_table() == {k: r.describe() for k, r in ROUTES.items()}


def test_every_route_of_the_app_is_in_the_table_and_nothing_else() -> None:
    app = create_app(ReplicaConfig())
    served = set()
    for route in app.routes:
        if isinstance(route, Mount):  # static files: read-only, GET and HEAD
            served.add(("GET", route.path))
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                served.add((method, route.path))  # type: ignore[attr-defined]
    assert served == set(ROUTES)


def concrete(path: str, key_hex: str, doc: str = "") -> tuple[str, dict[str, int | str]]:
    params: dict[str, int | str] = {"height": 0, "index": 0} if path.endswith("/proof") else {}
    if path in ("/v1/meterdata/intervals", "/v1/meterdata/readings.csv"):
        params = {"gateway": key_hex, "from": "2023-11-14", "to": "2023-11-15"}
    path = path.replace("{doc}", doc).replace("{member}", "m0000")
    return path.replace("{gw}", key_hex).replace("{height}", "0"), params


@pytest.fixture
def loaded(make_replica: Callable[..., RunningReplica], storage_factory: StorageFactory,
           tmp_path: Path) -> tuple[RunningReplica, bytes, str]:
    rep = make_replica(public=frozenset())  # nothing public: every rule is enforced
    key = enroll(rep.storage, SEED)
    chain = make_chain(SEED, 2, 3, meter_id=METER)
    assert rep.push(key, chain).status_code == 200  # pushes need no token
    settled = communitydata.settle(tmp_path / "community", members=2, producers=1,
                                   period=communitydata.DAY)
    communitydata.publish(settled, communitydata.replica_toml(tmp_path, storage_factory.url))
    return rep, key, settled.doc_hash


def callers(rep: RunningReplica) -> dict[str, tuple[str | None, tuple[str, ...] | None]]:
    """Name -> (Authorization header value, scopes it grants or None when invalid)."""
    out: dict[str, tuple[str | None, tuple[str, ...] | None]] = {
        "none": (None, None),
        "not-bearer": ("Basic dXNlcjpwdw==", None),
        "malformed": ("Bearer mct_nothex", None),
        "unknown": ("Bearer mct_0123456789abcdef_" + "ab" * 32, None),
    }
    for name, scopes in (("chain", (READ_CHAIN,)), ("readings", (READ_READINGS,)),
                         ("all", SCOPES)):
        text, _ = create_token(rep.storage, name, scopes, 1)
        out[name] = (f"Bearer {text}", scopes)
    text, rec = create_token(rep.storage, "revoked", SCOPES, 1)
    rep.storage.revoke_token(rec.id, 2)
    out["revoked"] = (f"Bearer {text}", None)
    # a valid token's id with another secret
    good = out["all"][0]
    assert good is not None
    out["wrong-secret"] = (good[:-8] + "00000000", None)
    return out


def expected(rule: Rule, scopes: tuple[str, ...] | None, header: str | None) -> tuple[int, str]:
    if rule.kind == "gateway-signature":
        return 200, ""
    if scopes is None:
        return 401, "token-required" if header is None else "bad-token"
    if rule.scope not in scopes:
        return 403, "insufficient-scope"
    return 200, ""


def test_every_route_with_every_caller(loaded: tuple[RunningReplica, bytes, str]) -> None:
    rep, key, doc = loaded
    tokens = callers(rep)
    checked = 0
    for (method, template), rule in ROUTES.items():
        if method != "GET" or rule.kind == "web-view":  # pages: tests/ui
            continue
        path, params = concrete(template, key.hex(), doc)
        for name, (header, scopes) in tokens.items():
            headers = {"Authorization": header} if header else {}
            r = rep.anon.get(path, params=params, headers=headers)
            status, code = expected(rule, scopes, header)
            assert r.status_code == status, (template, name, r.text[:200])
            if status != 200:
                assert r.json()["error"] == code, (template, name)
                if status == 401:
                    assert r.headers["www-authenticate"].startswith("Bearer")
                leak_free(r, tokens)
            checked += 1
    assert checked == sum(1 for (m, _), r in ROUTES.items()
                          if m == "GET" and r.kind != "web-view") * len(tokens)


def leak_free(r: httpx.Response, tokens: dict[str, tuple[str | None, object]]) -> None:
    """Nothing readable in a refusal: no reading, no token, no file path."""
    assert METER not in r.text
    for header, _ in tokens.values():
        if header and " " in header:
            secret = header.split(" ", 1)[1]
            assert secret not in r.text and secret[-20:] not in r.text
    assert not re.search(r"/(tmp|home|var|work)/", r.text)


def test_public_groups_open_only_what_they_name(
        make_replica: Callable[..., RunningReplica]) -> None:
    rep = make_replica()  # the default: health and heads public
    key = enroll(rep.storage, SEED)
    assert rep.push(key, make_chain(SEED, 1, 2)).status_code == 200
    assert rep.anon.get("/v1/health").status_code == 200
    assert rep.anon.get(f"/v1/gateways/{key.hex()}/head").json()["height"] == 0
    assert rep.anon.get(f"/v1/gateways/{key.hex()}/blocks/0/hash").status_code == 200
    for path in (f"/v1/gateways/{key.hex()}/blocks", "/v1/gateways", "/v1/forks",
                 f"/v1/gateways/{key.hex()}/readings.csv", "/openapi.json"):
        assert rep.anon.get(path).status_code == 401, path
    assert rep.anon.get("/docs").status_code == 404  # interactive docs are not served


def test_a_route_missing_from_the_table_is_refused(
        make_replica: Callable[..., RunningReplica]) -> None:
    rep = make_replica()
    app = rep.server.config.app

    @app.get("/v1/not-yet-decided")
    def secret() -> dict[str, str]:
        return {"reading": "the secret"}

    for client in (rep.http, rep.anon):  # every scope, or none: refused alike
        r = client.get("/v1/not-yet-decided")
        assert r.status_code == 403 and r.json()["error"] == "unlisted-route"
        assert "secret" not in r.text and "not-yet-decided" not in r.text
    assert rep.http.get("/v1/no-such-route").status_code == 404
