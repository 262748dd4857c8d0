"""The audit page: this replica's heads against a peer's, lag and discrepancies marked.

The peer is a second replica served on loopback, holding: ``north`` two blocks behind,
``east`` a different chain of the same height, no ``forky``, and a gateway this replica
does not know; a third configured peer is unreachable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext

from replica.app import create_app
from replica.auth import READ_CHAIN, READ_READINGS
from replica.config import ReplicaConfig
from replica.storage.base import open_storage
from replica.ui.config import AuditPeersConfig
from tests.support import uidata
from tests.support.browser import ServedApp
from tests.support.chains import gateway_key
from tests.support.pgserver import free_port
from tests.support.png import luma_variance
from tests.support.tokens import install_test_token
from tests.ui.conftest import FULL_TOKEN, UiReplica, login, open_page
from tests.ui.test_pages import MIN_VARIANCE


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UiReplica, str]]:
    d = tmp_path_factory.mktemp("audit")
    now = time.time_ns() // 1_000_000
    peer_storage = open_storage(f"sqlite:///{d / 'peer.db'}", pool_size=2)
    start = now - uidata.DAY_MS
    for name, seed, n, per in (("north", b"north", 4, 4), ("east", b"east", 3, 5)):
        key = gateway_key(name.encode())
        peer_storage.enroll(key, name, None, start - 60_000)
        uidata.push_chain(peer_storage, key, seed, n, start, now - 60_000, per_block=per)
    peer_storage.enroll(gateway_key(b"elsewhere"), "elsewhere", None, start)
    install_test_token(peer_storage, (READ_CHAIN,), "7e57000000000011", FULL_TOKEN)
    peer = ServedApp(create_app(ReplicaConfig(), peer_storage))
    token_file = d / "peer.token"
    token_file.write_text(FULL_TOKEN + "\n")
    os.chmod(token_file, 0o600)
    dead = f"http://127.0.0.1:{free_port()}"
    storage = open_storage(f"sqlite:///{d / 'replica.db'}", pool_size=4)
    data = uidata.build(storage, now)
    install_test_token(storage, (READ_CHAIN, READ_READINGS), "7e57000000000011", FULL_TOKEN)
    cfg = ReplicaConfig(audit=AuditPeersConfig(peers=(peer.url, dead), token_file=token_file,
                                               timeout_s=2.0))
    served = ServedApp(create_app(cfg, storage))
    yield UiReplica(served, storage, data, {"full": FULL_TOKEN}), peer.url
    served.stop()
    peer.stop()
    storage.close()
    peer_storage.close()


def test_audit_page_shows_lag_and_discrepancies(audited: tuple[UiReplica, str],
                                                context: BrowserContext, tmp_path: Path) -> None:
    rep, peer_url = audited
    login(context, rep.url, rep.tokens["full"])
    page, w = open_page(context, rep.url + "/ui/audit")
    api = rep.api("/v1/peers/heads")
    assert [p["url"] for p in api["peers"]] == [peer_url, api["peers"][1]["url"]]
    assert api["peers"][0]["error"] is None and api["peers"][1]["error"]
    status = {g["key"]: g["peers"][0] for g in api["gateways"]}
    keys = rep.data.keys
    assert status[keys["north"]]["status"] == "peer-behind" and status[keys["north"]]["lag"] == 2
    assert status[keys["east"]]["status"] == "differs" and status[keys["east"]]["lag"] == 0
    assert status[keys["forky"]]["status"] == "missing-there"
    assert status[gateway_key(b"elsewhere").hex()]["status"] == "missing-here"
    rows = page.eval_on_selector_all("#heads tbody tr", """trs => trs.map(tr => ({
        key: tr.dataset.key, bad: tr.classList.contains('discrepancy'),
        st: [...tr.querySelectorAll('td[data-status]')].map(td => td.dataset.status),
        cells: [...tr.cells].map(td => td.textContent)}))""")
    assert len(rows) == len(api["gateways"])
    for r, g in zip(rows, api["gateways"], strict=True):
        assert r["key"] == g["key"]
        assert r["st"] == [c["status"] for c in g["peers"]]
        assert r["bad"]  # the unreachable peer makes every row a discrepancy
        assert r["cells"][3] == ("–" if g["peers"][0]["height"] is None
                                 else str(g["peers"][0]["height"]))
        assert r["cells"][4] == ("–" if g["peers"][0]["lag"] is None
                                 else str(g["peers"][0]["lag"]))
    assert page.is_visible("#peers li.bad")
    png = page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)
    assert luma_variance(png) > MIN_VARIANCE
    assert w.problems == []


def test_a_bad_peer_token_file_is_refused_at_start(tmp_path: Path) -> None:
    from ledger.errors import ConfigError

    f = tmp_path / "t"
    f.write_text(FULL_TOKEN)
    os.chmod(f, 0o644)
    with pytest.raises(ConfigError, match="audit.token_file"):
        create_app(ReplicaConfig(audit=AuditPeersConfig(peers=("http://x",), token_file=f)))
