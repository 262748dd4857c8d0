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
    page.fill("#filter", "")
    page.click("#counts li[data-state=silent] button")
    states = page.eval_on_selector_all("#gateways tbody tr", "t => t.map(r => r.dataset.state)")
    assert states == ["silent", "silent"]
    page.click("#counts li[data-state=silent] button")  # again: every gateway
    assert page.eval_on_selector_all("#gateways tbody tr", "t => t.length") == len(
        ui_replica.data.keys)
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


def _plotted(page) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return page.evaluate("""() => { const u = document.getElementById('day-plot').uplot;
        return {x: u.data[0], series: u.series.slice(1).map((s, i) => ({
            label: s.label, values: u.data[i + 1]}))}; }""")


def test_gateway_day_plot_is_the_apis_intervals_with_substitutes_marked(
        ui_replica: UiReplica, context: BrowserContext, shots: Path) -> None:
    login(context, ui_replica.url, ui_replica.tokens["full"])
    key = ui_replica.data.keys["meadow"]
    page, w = open_page(context, f"{ui_replica.url}/ui/gateways/{key}")
    assert page.input_value("#day") == uidata.DAY
    api = ui_replica.api(f"/v1/meterdata/intervals?gateway={key}&from={uidata.DAY}"
                         f"&to={uidata.DAY}&interval=15m&tz=Europe/Vienna")
    series = api["series"]
    assert {(s["point"], s["direction"]) for s in series} == {
        ("meadow-grid", "import"), ("meadow-grid", "export"), ("meadow-pv", "export")}
    got = _plotted(page)
    assert got["x"] == [iv["start_ms"] / 1000 for iv in series[0]["intervals"]]
    lines = [s for s in got["series"] if "substituted" not in s["label"]]
    assert [s["values"] for s in lines] == [[iv["wh"] for iv in s["intervals"]]
                                            for s in series]
    assert any("PV generation" in s["label"] for s in lines)
    # substituted and estimated intervals: a marker series each, exactly at those intervals
    marks = [s for s in got["series"] if "substituted" in s["label"]]
    grid_import = next(s for s in series if s["point"] == "meadow-grid"
                       and s["direction"] == "import")
    q = grid_import["quality_counts"]
    assert q["substituted"] > 0 and q["estimated"] > 0
    want = [iv["wh"] if iv["quality"] in ("substituted", "estimated") else None
            for iv in grid_import["intervals"]]
    assert want in [m["values"] for m in marks]
    # the numbers under the plot: every interval, qualities shown, marked rows highlighted
    page.click("details.numbers summary")
    rows = page.eval_on_selector_all("#day-table tbody tr", """trs => trs.map(tr => ({
        marked: tr.classList.contains('marked'),
        cells: [...tr.cells].map(td => td.textContent),
        q: [...tr.querySelectorAll('td[data-quality]')].map(td => td.dataset.quality)}))""")
    assert len(rows) == len(grid_import["intervals"])
    for j, r in enumerate(rows):
        ivs = [s["intervals"][j] for s in series]
        assert r["cells"][0] == ivs[0]["start"]
        assert r["cells"][1::2] == ["" if iv["wh"] is None else str(iv["wh"]) for iv in ivs]
        assert r["q"] == [iv["quality"] for iv in ivs]
        assert r["marked"] == any(iv["quality"] != "measured" for iv in ivs)
    shown = page.eval_on_selector_all("#day-table td[data-quality=substituted]", "t => t.length")
    assert shown == sum(s["quality_counts"]["substituted"] for s in series)
    points = page.eval_on_selector_all("#points tbody tr td:first-child",
                                       "tds => tds.map(t => t.textContent)")
    assert sorted(points) == ["meadow-grid", "meadow-pv"]
    png = page.screenshot(path=str(shots / "gateway-day.png"), full_page=True)
    assert luma_variance(png) > MIN_VARIANCE
    # the plot area itself is drawn, not only the frame around it
    canvas = page.locator("#day-plot canvas").screenshot()
    assert luma_variance(canvas) > 10
    assert w.problems == []


def test_gateway_date_picker_loads_that_day(ui_replica: UiReplica,
                                           context: BrowserContext) -> None:
    login(context, ui_replica.url, ui_replica.tokens["full"])
    key = ui_replica.data.keys["meadow"]
    page, w = open_page(context, f"{ui_replica.url}/ui/gateways/{key}")
    page.click("#day-prev")
    page.wait_for_selector("body[data-day='2025-11-29']")
    api = ui_replica.api(f"/v1/meterdata/intervals?gateway={key}&from=2025-11-29"
                         f"&to=2025-11-29&interval=15m&tz=Europe/Vienna")
    got = _plotted(page)
    assert got["x"] == [iv["start_ms"] / 1000 for iv in api["series"][0]["intervals"]]
    page.fill("#day", uidata.DAY)
    page.dispatch_event("#day", "change")
    page.wait_for_selector(f"body[data-day='{uidata.DAY}']")
    assert _plotted(page)["x"][0] == uidata.DAY0_MS / 1000
    assert w.problems == []


def test_without_read_readings_the_gateway_page_shows_no_readings(
        ui_replica: UiReplica, context: BrowserContext) -> None:
    login(context, ui_replica.url, ui_replica.tokens["chain"])
    key = ui_replica.data.keys["meadow"]
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    w = watch(page)
    page.goto(f"{ui_replica.url}/ui/gateways/{key}")
    page.wait_for_selector("body[data-ready='1']")
    assert page.is_visible("#no-readings")
    assert not page.is_visible("#with-readings")
    assert page.eval_on_selector("#day-plot", "el => el.uplot === undefined")
    assert page.eval_on_selector_all("#day-table tbody tr", "t => t.length") == 0
    assert not [u for u in requested if "/v1/meterdata" in u]
    assert page.inner_text("#fact-height") != ""  # the chain facts are still there
    assert w.problems == []
    # and the API refuses this session the readings even when asked directly
    r = page.request.get(f"{ui_replica.url}/v1/meterdata/intervals?gateway={key}"
                         f"&from={uidata.DAY}&to={uidata.DAY}")
    assert r.status == 403


def test_revoking_the_token_ends_its_sessions(ui_replica: UiReplica,
                                              context: BrowserContext) -> None:
    from replica.tokens import create_token

    text, rec = create_token(ui_replica.storage, "short-lived", ("read:chain",), 1)
    login(context, ui_replica.url, text)
    page, w = open_page(context, ui_replica.url + "/ui/overview")
    assert w.problems == []
    ui_replica.storage.revoke_token(rec.id, 2)
    page.goto(ui_replica.url + "/ui/overview")
    assert page.url == ui_replica.url + "/ui/login"
    assert page.request.get(ui_replica.url + "/v1/gateways").status == 401
