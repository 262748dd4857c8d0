"""``meterchain demo --ui``: after the demo the replica keeps serving its web view, with a
URL and a login token printed, until Ctrl-C (SIGINT), which stops it cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from tests.ui.conftest import login, open_page

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_ui_serves_the_web_view_until_ctrl_c(browser: Browser, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "meterchain", "demo", "--seconds", "2",
                             "--ui", "--ledger", str(tmp_path / "ledger")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    try:
        url = token = None
        lines = []
        deadline = time.monotonic() + 120
        while token is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if m := re.match(r"web view: (http://127\.0\.0\.1:\d+)/ui", line):
                url = m.group(1)
            if m := re.search(r"log in with this token .*: (mct_\S+)$", line):
                token = m.group(1)
        assert url and token, "".join(lines)
        ctx = browser.new_context()
        login(ctx, url, token)
        page, w = open_page(ctx, url + "/ui/overview")
        names = page.eval_on_selector_all("#gateways tbody tr td:first-child",
                                          "tds => tds.map(td => td.textContent)")
        api = httpx.get(url + "/v1/gateways", headers={"Authorization": f"Bearer {token}"})
        assert sorted(names) == sorted(g["name"] for g in api.json()["gateways"])
        assert "demo-gateway" in names
        assert w.problems == []
        # every gateway's page draws without an error, the community's households too
        for g in api.json()["gateways"]:
            gpage, gw = open_page(ctx, f"{url}/ui/gateways/{g['key']}")
            assert gw.problems == [], g["name"]
            gpage.close()
        # the demo community's settlement is published, verified against this replica
        cpage, cw = open_page(ctx, url + "/ui/community")
        (item,) = httpx.get(url + "/v1/settlements", headers={
            "Authorization": f"Bearer {token}"}).json()["settlements"]
        assert item["community"] == "sonnenhof"
        assert cpage.inner_text("#fact-root") == item["root"]
        against = cpage.eval_on_selector_all(
            "#verifications tbody tr", "trs => trs.map(tr => [tr.dataset.against, tr.dataset.ok])")
        assert against == [[url, "1"]]
        assert cpage.eval_on_selector_all("#members tbody tr", "t => t.length") == item["members"]
        assert cw.problems == []
        ctx.close()
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, rest
        assert "stopping the replica" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
