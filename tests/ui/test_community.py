"""The Community page and the printable member statement in headless Chromium.

The community's numbers come from really running the settlement on fixed readings and
publishing it (tests/support/communitydata.py). Each page must load with no console
error and no failed request, show exactly what the API answers (the plot's data and
the table under it), and draw something (the screenshot's pixels vary). A token
without ``read:readings`` sees no member data.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from replica.app import create_app
from replica.auth import READ_CHAIN, READ_READINGS
from replica.config import ReplicaConfig
from replica.storage.base import open_storage
from tests.support import communitydata as cd
from tests.support import uidata
from tests.support.browser import ServedApp
from tests.support.png import luma_variance
from tests.support.tokens import install_test_token
from tests.ui.conftest import CHAIN_ONLY_TOKEN, FULL_TOKEN, UiReplica, login, open_page, watch

MIN_VARIANCE = 50.0
FIELDS = ("generation", "consumption", "covered", "surplus", "grid_import")


@pytest.fixture(scope="module")
def community(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UiReplica, cd.Settled]]:
    work = tmp_path_factory.mktemp("community-ui")
    url = f"sqlite:///{work / 'replica.db'}"
    settled = cd.settle(work / "run")
    cd.publish(settled, cd.replica_toml(work, url))
    storage = open_storage(url, pool_size=4)
    tokens = {
        "full": install_test_token(storage, (READ_CHAIN, READ_READINGS), "7e57000000000011",
                                   FULL_TOKEN),
        "chain": install_test_token(storage, (READ_CHAIN,), "7e57000000000012",
                                    CHAIN_ONLY_TOKEN),
    }
    served = ServedApp(create_app(ReplicaConfig(), storage))
    empty = uidata.UiDataSet(now_ms=0)
    yield UiReplica(served, storage, empty, tokens), settled
    served.stop()
    storage.close()


def _plotted(page: Page, plot: str) -> dict[str, Any]:
    return dict(page.evaluate(f"""() => {{ const u = document.getElementById('{plot}').uplot;
        return {{x: u.data[0], series: u.series.slice(1).map((s, i) => ({{
            label: s.label, values: u.data[i + 1]}}))}}; }}"""))


def _table(page: Page, selector: str) -> list[list[str]]:
    return list(page.eval_on_selector_all(
        f"{selector} tbody tr", "trs => trs.map(tr => [...tr.cells].map(c => c.textContent))"))


def _check_flows(page: Page, api: dict[str, Any]) -> None:
    plotted = _plotted(page, "flow-plot")
    assert plotted["x"] == [f["start_ms"] / 1000 for f in api["flows"]]
    assert [s["values"] for s in plotted["series"]] == [
        [f[k] for f in api["flows"]] for k in FIELDS]
    rows = _table(page, "#flow-table")
    assert [[int(c) for c in r[1:]] for r in rows] == [[f[k] for k in FIELDS]
                                                      for f in api["flows"]]


def test_community_month_and_day_are_the_apis_flows(
        community: tuple[UiReplica, cd.Settled], context: BrowserContext, shots: Path) -> None:
    rep, settled = community
    login(context, rep.url, rep.tokens["full"])
    page, w = open_page(context, rep.url + "/ui/community")
    (item,) = rep.api("/v1/settlements")["settlements"]
    assert page.inner_text("#fact-root") == item["root"] == settled.document["document"]["root"]
    assert page.inner_text("#fact-document") == settled.doc_hash
    assert page.inner_text("#fact-members") == "6"
    assert page.is_visible("#unverified") and not page.is_visible("#verifications")
    base = f"/v1/settlements/{settled.doc_hash}"
    month = rep.api(f"{base}/flows?per=day")
    assert len(month["flows"]) == 30
    _check_flows(page, month)
    assert [r[0] for r in _table(page, "#flow-table")] == [f["day"] for f in month["flows"]]
    png = page.screenshot(path=str(shots / "community.png"), full_page=True)
    assert luma_variance(png) > MIN_VARIANCE
    page.check("input[name=view][value=day]")
    page.fill("#day", cd.DAY)
    page.dispatch_event("#day", "change")
    page.wait_for_function("() => document.querySelectorAll('#flow-table tbody tr').length"
                           " === 96")
    day = rep.api(f"{base}/flows?day={cd.DAY}")
    _check_flows(page, day)
    page.click("#day-next")
    page.wait_for_function("() => document.querySelector('#flow-table tbody tr td')"
                           ".textContent.startsWith('2026-11-15')")
    _check_flows(page, rep.api(f"{base}/flows?day=2026-11-15"))
    assert w.problems == []


def test_member_table_downloads_and_printable_statement(
        community: tuple[UiReplica, cd.Settled], context: BrowserContext, shots: Path) -> None:
    rep, settled = community
    login(context, rep.url, rep.tokens["full"])
    page, w = open_page(context, rep.url + "/ui/community")
    members = rep.api(f"/v1/settlements/{settled.doc_hash}/members")["members"]
    rows = {r[0]: r for r in _table(page, "#members")}
    assert sorted(rows) == [m["member"] for m in members]
    for m in members:
        r, c = rows[m["member"]], m["channels_wh"]
        assert [int(x) for x in r[1:6]] == [c["G.01_use"], c["G.03_covered"],
                                            c["G.01_generation"], c["P.01_surplus"],
                                            c["grid_import"]]
        minor = page.eval_on_selector_all(
            f"#members tr[data-member='{m['member']}'] td[data-minor]",
            "tds => tds.map(td => Number(td.dataset.minor))")
        assert minor == [m["money_minor"]["paid_to_community"],
                         m["money_minor"]["received_from_community"]]
    prosumer = "m0001"
    for kind in ("json", "csv"):
        with page.expect_download() as dl:
            page.click(f"#members tr[data-member='{prosumer}'] a.dl-{kind}")
        got = Path(dl.value.path()).read_bytes()
        assert got == (settled.directory / "members" / f"{prosumer}.{kind}").read_bytes()
    page.click(f"#members tr[data-member='{prosumer}'] a.dl-print")
    page.wait_for_selector("body[data-ready]", timeout=30_000)
    assert page.get_attribute("body", "data-ready") == "1", page.text_content("#status")
    st = json.loads((settled.directory / "members" / f"{prosumer}.json").read_bytes())
    pairs = "trs => trs.map(tr => [tr.dataset.key, Number(tr.cells[1].dataset.value)])"
    channels = dict(page.eval_on_selector_all("#channels tr", pairs))
    assert channels == st["channels_wh"]
    money = dict(page.eval_on_selector_all("#money tr", pairs))
    assert money == st["money_minor"]
    # the per-day table and plot: the statement's CSV summed per local day
    sums: dict[str, list[int]] = {}
    for row in csv.DictReader(io.StringIO(
            (settled.directory / "members" / f"{prosumer}.csv").read_text())):
        day = page.evaluate(f"MC.dayIn({row['interval_start_ms']}, 'Europe/Vienna')")
        acc = sums.setdefault(day, [0] * 5)
        for i, col in enumerate(("G.01_use", "G.03_covered", "G.01_generation",
                                 "P.01_surplus", "grid_import")):
            acc[i] += int(row[col])
    table = _table(page, "#s-days")
    assert {r[0]: [int(x) for x in r[1:]] for r in table} == sums
    plotted = _plotted(page, "s-plot")
    assert [s["values"] for s in plotted["series"]] == [
        [sums[r[0]][i] for r in table] for i in range(5)]
    assert len(_table(page, "#counterparties")) == len(st["counterparties"]) > 0
    page.emulate_media(media="print")
    assert not page.is_visible("header.top") and not page.is_visible("#print")
    png = page.screenshot(path=str(shots / "statement-print.png"), full_page=True)
    assert luma_variance(png) > MIN_VARIANCE
    assert w.problems == []


def test_without_read_readings_no_member_data(
        community: tuple[UiReplica, cd.Settled], context: BrowserContext) -> None:
    rep, settled = community
    login(context, rep.url, rep.tokens["chain"])
    requested: list[str] = []
    context.on("request", lambda r: requested.append(r.url))
    page, w = open_page(context, rep.url + "/ui/community")
    assert page.inner_text("#fact-root") == settled.document["document"]["root"]
    assert page.is_visible("#no-readings") and not page.is_visible("#with-readings")
    assert _table(page, "#members") == [] and not page.is_visible("#document-download")
    assert [u for u in requested if "/v1/settlements/" in u] == []
    sp = context.new_page()
    watch(sp)
    sp.goto(f"{rep.url}/ui/community/{settled.doc_hash}/members/m0001")
    sp.wait_for_selector("body[data-ready='1']")
    assert sp.is_visible("#no-readings") and sp.inner_text("#channels") == ""
    assert [u for u in requested if "/v1/settlements/" in u] == []
    assert w.problems == []


def test_community_page_needs_a_login_and_bad_paths_are_404(
        community: tuple[UiReplica, cd.Settled], context: BrowserContext) -> None:
    rep, settled = community
    page = context.new_page()
    page.goto(rep.url + "/ui/community")
    assert page.url == rep.url + "/ui/login"
    login(context, rep.url, rep.tokens["full"])
    r = page.request.get(f"{rep.url}/ui/community/{settled.doc_hash}/members/a%20b")
    assert r.status == 404
