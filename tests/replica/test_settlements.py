"""Published settlements: ``meterchain settle publish`` into a replica (SQLite and
PostgreSQL), its read API under uvicorn, and ``settle verify --record``.

The settlement is really run (``meterchain settle run``) over the synthetic
community's fixed readings (tests/support/communitydata.py); nothing is hand-written.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from meterchain.cli import main
from replica.auth import READ_CHAIN
from replica.errors import SettlementRejected
from replica.settlements.intake import check_document
from settlement.document import document_hash, load_document
from settlement.statements import read_statement
from tests.replica.conftest import RunningReplica, StorageFactory
from tests.settlement import test_replica_source as replay
from tests.support import communitydata as cd
from tests.support.tokens import auth_header, install_test_token

CHAIN_TOKEN = f"mct_7e57000000000031_{'c3' * 32}"


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> cd.Settled:
    return cd.settle(tmp_path_factory.mktemp("community"))


def _publish(settled: cd.Settled, factory: StorageFactory, tmp_path: Path) -> Path:
    cfg = cd.replica_toml(tmp_path, factory.url)
    out = cd.publish(settled, cfg)
    assert out.startswith(f"published: {cd.NAME} {cd.PERIOD} revision 0, 6 members")
    return cfg


def test_publish_then_read_back_byte_for_byte(settled: cd.Settled, replica: RunningReplica,
                                              storage_factory: StorageFactory,
                                              tmp_path: Path) -> None:
    _publish(settled, storage_factory, tmp_path)
    (item,) = replica.http.get("/v1/settlements").json()["settlements"]
    body = settled.document["document"]
    assert item["document_sha256"] == settled.doc_hash == document_hash(body).hex()
    assert (item["community"], item["period"], item["revision"], item["root"]) == (
        cd.NAME, cd.PERIOD, 0, body["root"])
    assert item["members"] == len(body["members"]) and item["verifications"] == []
    base = f"/v1/settlements/{settled.doc_hash}"
    r = replica.http.get(f"{base}/document")
    assert r.content == (settled.directory / "settlement.json").read_bytes()
    members = replica.http.get(f"{base}/members").json()
    assert [m["member"] for m in members["members"]] == [m["id"] for m in body["members"]]
    for m in members["members"]:
        files = settled.directory / "members"
        st = json.loads((files / f"{m['member']}.json").read_bytes())
        assert m["channels_wh"] == st["channels_wh"] and m["money_minor"] == st["money_minor"]
        for kind in ("json", "csv"):
            got = replica.http.get(f"{base}/members/{m['member']}/statement.{kind}")
            assert got.status_code == 200
            assert got.content == (files / f"{m['member']}.{kind}").read_bytes()


def _csv_sums(settled: cd.Settled) -> dict[int, list[int]]:
    """Community sums per interval from the published CSV statements (EDA columns)."""
    sums: dict[int, list[int]] = {}
    for path in sorted((settled.directory / "members").glob("*.csv")):
        for row in csv.DictReader(io.StringIO(path.read_text())):
            acc = sums.setdefault(int(row["interval_start_ms"]), [0] * 5)
            for i, col in enumerate(("G.01_generation", "G.01_use", "G.03_covered",
                                     "P.01_surplus", "grid_import")):
                acc[i] += int(row[col])
    return sums


def test_flows_are_the_members_sums_per_interval_and_per_day(
        settled: cd.Settled, replica: RunningReplica, storage_factory: StorageFactory,
        tmp_path: Path) -> None:
    _publish(settled, storage_factory, tmp_path)
    base = f"/v1/settlements/{settled.doc_hash}"
    whole = replica.http.get(f"{base}/flows").json()
    sums = _csv_sums(settled)
    fields = ("generation", "consumption", "covered", "surplus", "grid_import")
    assert {f["start_ms"]: [f[k] for k in fields] for f in whole["flows"]} == sums
    assert len(whole["flows"]) == 30 * 96  # November in Vienna: no clock change
    for f in whole["flows"]:
        assert f["covered"] == f["generation"] - f["surplus"]  # nothing created or lost
    assert sum(f["covered"] for f in whole["flows"]) == settled.document["document"][
        "totals"]["covered"]
    per_day = replica.http.get(f"{base}/flows", params={"per": "day"}).json()["flows"]
    assert len(per_day) == 30
    day = replica.http.get(f"{base}/flows", params={"day": cd.DAY}).json()
    assert len(day["flows"]) == 96
    (row,) = [d for d in per_day if d["day"] == cd.DAY]
    assert all(row[k] == sum(f[k] for f in day["flows"]) for k in fields)
    assert replica.http.get(f"{base}/flows", params={"day": "2026-12-01"}).status_code == 400


def test_access_and_bounds(settled: cd.Settled, replica: RunningReplica,
                           storage_factory: StorageFactory, tmp_path: Path) -> None:
    _publish(settled, storage_factory, tmp_path)
    base = f"/v1/settlements/{settled.doc_hash}"
    personal = [f"{base}/document", f"{base}/members", f"{base}/flows",
                f"{base}/members/m0000/statement.json", f"{base}/members/m0000/statement.csv"]
    for path in ["/v1/settlements", *personal]:
        assert replica.anon.get(path).status_code == 401, path
    chain = install_test_token(replica.storage, (READ_CHAIN,), "7e57000000000031", CHAIN_TOKEN)
    h = auth_header(chain)
    assert replica.anon.get("/v1/settlements", headers=h).status_code == 200
    for path in personal:  # no member data without read:readings
        r = replica.anon.get(path, headers=h)
        assert (r.status_code, r.json()["error"]) == (403, "insufficient-scope"), path
    for path, code in (("/v1/settlements?limit=101", 400), ("/v1/settlements?limit=0", 400),
                       (f"{base}/members?limit=1001", 400), ("/v1/settlements/abc/flows", 400),
                       (f"/v1/settlements/{'0' * 64}/document", 404),
                       (f"{base}/members/no-such/statement.csv", 404),
                       (f"{base}/members/a%20b/statement.csv", 400),
                       (f"{base}/flows?per=week", 400), (f"{base}/flows?day=2026-11-31", 400)):
        assert replica.http.get(path).status_code == code, path
    page = replica.http.get(f"{base}/members", params={"limit": 4}).json()
    rest = replica.http.get(f"{base}/members", params={"after": page["next"]}).json()
    assert [m["member"] for m in page["members"] + rest["members"]] == [
        m["id"] for m in settled.document["document"]["members"]]
    assert rest["next"] is None


def test_republish_is_idempotent_and_conflicts_are_refused(
        settled: cd.Settled, replica: RunningReplica, storage_factory: StorageFactory,
        tmp_path: Path, capsys: Any) -> None:
    cfg = _publish(settled, storage_factory, tmp_path)
    assert "already published (unchanged)" in cd.publish(settled, cfg)
    other = cd.settle(tmp_path / "other", seed=cd.SEED + 1)  # same period and revision
    capsys.readouterr()
    assert main(["settle", "publish", str(other.directory), "--config", str(cfg)]) == 2
    assert "already published as document" in capsys.readouterr().err
    # a statement whose lines are not the member's committed lines: nothing is stored
    st = other.directory / "members" / "m0001.json"
    obj = json.loads(st.read_bytes())
    obj["lines"][0] = obj["lines"][0].replace(",M,", ",E,")
    st.write_text(json.dumps(obj))
    fresh = cd.replica_toml(tmp_path / "fresh", f"sqlite:///{tmp_path / 'fresh.db'}")
    assert main(["settle", "publish", str(other.directory), "--config", str(fresh)]) == 2
    assert "do not give m0001's root" in capsys.readouterr().err
    assert [s["document_sha256"] for s in replica.http.get("/v1/settlements").json()[
        "settlements"]] == [settled.doc_hash]


def test_the_replica_checks_shape_and_signature_itself(settled: cd.Settled) -> None:
    raw = (settled.directory / "settlement.json").read_bytes()
    assert check_document(raw).doc_hash == settled.doc_hash
    obj = json.loads(raw)
    obj["document"]["totals"]["covered"] += 1
    with pytest.raises(SettlementRejected, match="signature is refused"):
        check_document(json.dumps(obj).encode())
    obj = json.loads(raw)
    obj["document"]["period"]["interval_ms"] = 1000  # a month of seconds: unbounded flows
    with pytest.raises(SettlementRejected, match="more than 8928 intervals"):
        check_document(json.dumps(obj).encode())
    for bad, why in ((b"[]", "exactly 'document' and 'signature'"), (b"{", "not JSON"),
                     (b" " * (16 * 1024 * 1024 + 1), "larger than the limit")):
        with pytest.raises(SettlementRejected, match=why):
            check_document(bad)


@pytest.fixture
def replay_replica() -> Iterator[str]:
    """The recorded replica of tests/settlement/test_replica_source.py over a socket."""
    replay._Replay.answers = {(a["path"], tuple(sorted(a["params"].items()))): a["json"]
                              for a in replay.CAPTURE["answers"]}
    server = ThreadingHTTPServer(("127.0.0.1", 0), replay._Replay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize("storage_factory", ["sqlite"], indirect=True)
def test_verify_records_against_which_replica(
        replay_replica: str, replica: RunningReplica, storage_factory: StorageFactory,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    (tmp_path / "community.toml").write_text(replay.TOML)
    import keyfiles

    keyfiles.generate_gateway_key(tmp_path / "keys")
    monkeypatch.setenv("MC_REPLICA_TOKEN", replay.TOKEN)
    common = ["--community", str(tmp_path / "community.toml")]
    out = tmp_path / "out"
    assert main(["settle", "run", *common, "--period", "2026-11-02", "--replica",
                 replay_replica, "--key", str(tmp_path / "keys" / "gateway.key"),
                 "--out", str(out)]) == 0
    cfg = cd.replica_toml(tmp_path, storage_factory.url)
    assert main(["settle", "publish", str(out), "--config", str(cfg)]) == 0
    doc = out / "settlement.json"
    # recomputed under another rule the root differs: the failure is recorded
    other = tmp_path / "other.toml"
    other.write_text(replay.TOML.replace('mode = "pro_rata"', 'mode = "priority_cascade"'))
    assert main(["settle", "verify", str(doc), "--community", str(other), "--replica",
                 replay_replica, "--record", str(cfg)]) == 1
    (item,) = replica.http.get("/v1/settlements").json()["settlements"]
    (v,) = item["verifications"]
    assert (v["against"], v["ok"]) == (replay_replica, False) and "community differs" in v["detail"]
    capsys.readouterr()
    assert main(["settle", "verify", str(doc), *common, "--replica", replay_replica,
                 "--record", str(cfg)]) == 0
    assert f"verified against {replay_replica}" in capsys.readouterr().out
    # an intervals file is no replica copy: nothing to record
    assert main(["settle", "verify", str(doc), *common, "--intervals",
                 str(out / "intervals.json"), "--record", str(cfg)]) == 2
    assert "--record needs --replica or --config" in capsys.readouterr().err
    (item,) = replica.http.get("/v1/settlements").json()["settlements"]
    assert item["document_sha256"] == load_document(str(doc)).hash.hex()
    (v,) = item["verifications"]  # the latest result per replica copy
    assert v["against"] == replay_replica and v["ok"] is True
    assert v["detail"] == f"recomputed root {item['root']}"
    assert read_statement(out / "members" / "anna.json")["document_sha256"] == item[
        "document_sha256"]
    # recording needs the document published there
    empty = cd.replica_toml(tmp_path / "empty", f"sqlite:///{tmp_path / 'empty.db'}")
    assert main(["settle", "verify", str(doc), *common, "--replica", replay_replica,
                 "--record", str(empty)]) == 2
    assert "is not published on this replica" in capsys.readouterr().err
