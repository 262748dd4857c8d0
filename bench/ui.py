"""Web view: time to a fully drawn page in headless Chromium (Debian's package).

Builds the web view's fixed data set (tests/support/uidata.py) with ``--gateways``
gateways in a temporary SQLite replica, serves it under uvicorn on loopback, logs in
with a token through the login form, then opens each page ``--rounds`` times in a
fresh tab. "Drawn" is the page script's own mark: every fetch answered, every table
and plot drawn, one animation frame painted (``data-drawn-ms``, ms since navigation
start). Reports the median and worst per page, against its target; "day plot" is the
gateway page's own time to fetch and draw one day of 15-minute energy after the day is
picked (``data-day-ms``), "gateway" the whole page from navigation.

"community" is the Community page of a month's settlement of ``--members`` members
(50 of them producers): really settled by ``meterchain settle run`` over
:mod:`settlement.synthetic`'s readings and published with ``settle publish``
(tests/support/communitydata.py); drawn means the month's plot, its table and the
member table with every member. The time to settle and publish is reported too.

Calibration (same run): a fixed JavaScript workload in the same browser (sorting
200,000 numbers), and the same page with the smallest data set, so figures from
machines of different speed can be compared.

    python bench/ui.py                    # 1,000 gateways, 1,000 community members
    python bench/ui.py --gateways 50 --members 20 --rounds 2 --json

Targets: overview with 1,000 gateways <= 1,000 ms; a gateway's day plot <= 300 ms;
the community month with 1,000 members <= 2,000 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import add_common_args, report  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from replica.app import create_app  # noqa: E402
from replica.config import ReplicaConfig  # noqa: E402
from replica.storage.base import open_storage  # noqa: E402
from replica.ui.config import UiConfig  # noqa: E402
from tests.support import communitydata, uidata  # noqa: E402
from tests.support.browser import ServedApp, launch  # noqa: E402
from tests.support.tokens import install_test_token  # noqa: E402

TARGET_MS = {"overview": 1000, "day plot": 300, "community": 2000}

CALIBRATION_JS = """() => { const t = performance.now();
  const a = Array.from({length: 200000}, (_, i) => (i * 7919) % 200003);
  a.sort((x, y) => x - y); return performance.now() - t; }"""


def drawn_ms(context: Any, url: str) -> float:
    """Open ``url`` in a new tab; ms from navigation start to the page's drawn mark."""
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-ready]", timeout=60_000)
    if page.get_attribute("body", "data-ready") != "1":
        raise RuntimeError(f"{url}: {page.text_content('#status')}")
    ms = float(page.get_attribute("body", "data-drawn-ms") or "nan")
    page.close()
    return ms


def settle_community(tmp: Path, members: int) -> tuple[float, float]:
    """Settle a month of ``members`` members and publish it to the replica in ``tmp``;
    seconds each took."""
    t0 = time.perf_counter()
    settled = communitydata.settle(tmp / "community", members=members,
                                   producers=min(50, max(1, members // 3)))
    t1 = time.perf_counter()
    communitydata.publish(settled, communitydata.replica_toml(
        tmp, f"sqlite:///{tmp / 'replica.db'}"))
    return t1 - t0, time.perf_counter() - t1


def serve(tmp: Path, gateways: int) -> tuple[ServedApp, Any, uidata.UiDataSet, str]:
    storage = open_storage(f"sqlite:///{tmp / 'replica.db'}", pool_size=4)
    data = uidata.build(storage, time.time_ns() // 1_000_000,
                        extra=max(0, gateways - uidata.FIXED_GATEWAYS))
    token = install_test_token(storage)
    cfg = ReplicaConfig(ui=UiConfig(behind_after_s=uidata.BEHIND_S,
                                    silent_after_s=uidata.SILENT_S))
    return ServedApp(create_app(cfg, storage)), storage, data, token


def measure(browser: Any, base: str, token: str, pages: dict[str, str],
            rounds: int) -> dict[str, list[float]]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.goto(base + "/ui/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/ui/overview")
    page.close()
    out: dict[str, list[float]] = {name: [] for name in pages}
    for name, path in pages.items():
        drawn_ms(ctx, base + path)  # warm: static files cached as a returning user has them
        for _ in range(rounds):
            out[name].append(drawn_ms(ctx, base + path))
    out["day plot"] = day_plot_ms(ctx, base + pages["gateway"], rounds)
    ctx.close()
    return out


def day_plot_ms(context: Any, url: str, rounds: int) -> list[float]:
    """On the gateway page, ms to fetch and draw the data set's day after picking it
    (from the day before): the page's own ``data-day-ms`` mark."""
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    out = []
    for _ in range(rounds + 1):
        page.click("#day-prev")
        page.wait_for_selector("body[data-day='2025-11-29']")
        page.click("#day-next")
        page.wait_for_selector(f"body[data-day='{uidata.DAY}']")
        out.append(float(page.get_attribute("body", "data-day-ms") or "nan"))
    page.close()
    return out[1:]


def main() -> None:
    ap = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    ap.add_argument("--gateways", type=int, default=1000)
    ap.add_argument("--members", type=int, default=1000,
                    help="members of the settled community (month of 15-minute intervals)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as td:
        browser = launch(pw)
        cal = browser.new_page()
        summary["calibration_js_sort_ms"] = round(statistics.median(
            cal.evaluate(CALIBRATION_JS) for _ in range(5)), 1)
        cal.close()
        sizes = [("small", uidata.FIXED_GATEWAYS, 6), ("full", args.gateways, args.members)]
        for label, n, members in sizes:
            d = Path(td) / label
            d.mkdir()
            settle_s, publish_s = settle_community(d, members)
            summary[f"community_{label}_members"] = members
            summary[f"community_{label}_settle_s"] = round(settle_s, 2)
            summary[f"community_{label}_publish_s"] = round(publish_s, 2)
            served, storage, data, token = serve(d, n)
            try:
                pages = {"overview": "/ui/overview",
                         "gateway": f"/ui/gateways/{data.keys['meadow']}",
                         "community": "/ui/community"}
                got = measure(browser, served.url, token, pages, args.rounds)
            finally:
                served.stop()
                storage.close()
            for name, times in got.items():
                row: dict[str, Any] = {"page": name, "gateways": len(data.keys),
                                       "members": members if name == "community" else "",
                                       "median_ms": round(statistics.median(times), 1),
                                       "max_ms": round(max(times), 1)}
                target = TARGET_MS.get(name) if label == "full" else None
                row["target_ms"] = target if target is not None else ""
                row["meets"] = ("yes" if row["median_ms"] <= target else "NO") \
                    if target is not None else ""
                rows.append(row)
                summary[f"{name.replace(' ', '_')}_{label}_median_ms"] = row["median_ms"]
        browser.close()
    report("web view: time to a fully drawn page (headless Chromium)", rows, summary,
           args.json)


if __name__ == "__main__":
    main()
