"""The web view in headless Chromium: login, overview, gateway and audit pages.

Each page must load with no console error and no failed request, show the numbers the
API gives for the fixed data set (tests/support/uidata.py), and draw something (the
screenshot's pixels vary).
"""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import BrowserContext

from replica.ui.states import STATES, gateway_state
from tests.support import uidata
from tests.support.png import luma_variance
from tests.ui.conftest import UiReplica, login, open_page, watch

MIN_VARIANCE = 50.0
"""Grey-level variance of a screenshot with text and colour on it (blank: 0)."""


def test_pages_need_a_login(ui_replica: UiReplica, context: BrowserContext) -> None:
    page = context.new_page()
    for path in ("/ui/overview", f"/ui/gateways/{ui_replica.data.keys['north']}",
                 "/ui/audit", "/ui"):
        page.goto(ui_replica.url + path)
        assert page.url == ui_replica.url + "/ui/login", path
    # the API behind the pages refuses the browser too
    r = page.request.get(ui_replica.url + "/v1/gateways")
    assert r.status == 401


def test_a_bad_token_is_refused(ui_replica: UiReplica, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(ui_replica.url + "/ui/login")
    page.fill("#token", "mct_0000000000000000_" + "00" * 32)
    page.click("button[type=submit]")
    assert "not accepted" in page.inner_text("[role=alert]")
    assert not any(c["name"] == "mc_session" for c in context.cookies())


def test_session_cookie_is_httponly_and_strict(ui_replica: UiReplica,
                                                context: BrowserContext) -> None:
    login(context, ui_replica.url, ui_replica.tokens["full"])
    (cookie,) = [c for c in context.cookies() if c["name"] == "mc_session"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert ui_replica.tokens["full"] not in cookie["value"]
    page = context.new_page()
    page.goto(ui_replica.url + "/ui/overview")
    assert page.evaluate("document.cookie") == ""


def test_overview_shows_every_gateway_with_the_apis_values(
        ui_replica: UiReplica, context: BrowserContext, shots: Path) -> None:
    login(context, ui_replica.url, ui_replica.tokens["full"])
    page, w = open_page(context, ui_replica.url + "/ui/overview")
    api = ui_replica.api("/v1/gateways")["gateways"]
    forks = {f["key"] for f in ui_replica.api("/v1/forks")["forks"]}
    rows = page.eval_on_selector_all("#gateways tbody tr", """trs => trs.map(tr => ({
        key: tr.dataset.key, state: tr.dataset.state,
        cells: [...tr.cells].map(td => td.textContent)}))""")
    assert len(rows) == len(api) == len(ui_replica.data.keys)
    by_key = {r["key"]: r for r in rows}
    now = ui_replica.data.now_ms
    for g in api:
        r = by_key[g["key"]]
        assert r["cells"][0] == g["name"]
        assert r["cells"][1] == (g["site"] or "")
        assert int(r["cells"][2]) == g["height"]
        want = gateway_state(g, forks, now, uidata.BEHIND_S, uidata.SILENT_S)
        assert r["state"] == want == ui_replica.data.expected_state[g["name"]]
    counts = page.eval_on_selector_all(
        "#counts li", "lis => lis.map(li => [li.dataset.state, li.querySelector('.count')"
        ".textContent])")
    assert dict(counts) == {s: str(sum(1 for r in rows if r["state"] == s)) for s in STATES}
    png = page.screenshot(path=str(shots / "overview.png"), full_page=True)
    assert luma_variance(png) > MIN_VARIANCE
    assert w.problems == []


def test_overview_sorts_and_filters(ui_replica: UiReplica, context: BrowserContext) -> None:
    login(context, ui_replica.url, ui_replica.tokens["full"])
    page, w = open_page(context, ui_replica.url + "/ui/overview")
    heights = lambda: [int(t) for t in page.eval_on_selector_all(  # noqa: E731
        "#gateways tbody tr td:nth-child(3)", "tds => tds.map(td => td.textContent)")]
    page.click("th[data-key=height]")
    assert heights() == sorted(heights())
    page.click("th[data-key=height]")
    assert heights() == sorted(heights(), reverse=True)
    assert page.get_attribute("th[data-key=height]", "aria-sort") == "descending"
    page.fill("#filter", "plant-1")
    names = page.eval_on_selector_all("#gateways tbody tr td:first-child",
                                      "tds => tds.map(td => td.textContent)")
    assert sorted(names) == ["north", "west"]
    page.fill("#filter", "revoked")
    assert page.eval_on_selector_all("#gateways tbody tr", "t => t.length") == 1
    assert w.problems == []


def test_gateway_page_shows_chain_facts_and_fork_evidence(
        ui_replica: UiReplica, context: BrowserContext, shots: Path) -> None:
    login(context, ui_replica.url, ui_replica.tokens["full"])
    key = ui_replica.data.keys["forky"]
    page, w = open_page(context, f"{ui_replica.url}/ui/gateways/{key}")
    facts = ui_replica.api(f"/v1/gateways/{key}/facts")
    assert page.inner_text("#fact-height") == str(facts["height"])
    assert page.inner_text("#fact-head_hash") == facts["head_hash"]
    assert facts["first_reading_ms"] is not None
    got_first = page.inner_text("#fact-first_reading")
    assert got_first.startswith(page.evaluate(
        f"new Date({facts['first_reading_ms']}).toISOString().slice(0, 19)"))
    forks = ui_replica.api(f"/v1/gateways/{key}/forks")["forks"]
    assert len(forks) == 1
    cells = page.eval_on_selector_all("#forks tbody td", "tds => tds.map(t => t.textContent)")
    assert cells[0] == str(forks[0]["height"])
    assert cells[2] == forks[0]["a"]["header"] and cells[3] == forks[0]["b"]["header"]
    with page.expect_download() as dl:
        page.click("#forks-download")
    assert dl.value.suggested_filename == f"forks-{key[:16]}.json"
    assert json.loads(Path(dl.value.path()).read_text())["forks"] == forks
    png = page.screenshot(path=str(shots / "gateway.png"), full_page=True)
    assert luma_variance(png) > MIN_VARIANCE
    assert w.problems == []


def test_gateway_without_forks_says_so(ui_replica: UiReplica, context: BrowserContext) -> None:
    login(context, ui_replica.url, ui_replica.tokens["full"])
    page, w = open_page(context, f"{ui_replica.url}/ui/gateways/{ui_replica.data.keys['north']}")
    assert page.is_visible("#forks-none")
    assert not page.is_visible("#forks-download")
    assert w.problems == []


def test_logout_ends_the_session(ui_replica: UiReplica, context: BrowserContext) -> None:
    login(context, ui_replica.url, ui_replica.tokens["full"])
    page = context.new_page()
    watch(page)
    page.goto(ui_replica.url + "/ui/overview")
    page.click(".logout button")
    page.wait_for_url(ui_replica.url + "/ui/login")
    page.goto(ui_replica.url + "/ui/overview")
    assert page.url == ui_replica.url + "/ui/login"
    assert page.request.get(ui_replica.url + "/v1/gateways").status == 401
