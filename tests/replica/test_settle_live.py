"""``meterchain settle`` against a live replica: uvicorn, a real token, both backends.

One day of signed 5-minute register readings of a small community is pushed to a
replica served by uvicorn: a household with a one-hour gap (anna), a prosumer with a
grid and a PV meter (bert) on one gateway, a PV plant on a second gateway whose blocks
are sealed to the utility. The metering points are registered, a token with only the
members' scope (``read:readings``) is made the way ``meterchain replica token create``
makes one, and then:

- ``settle run`` and ``settle verify`` over HTTP with that token;
- ``settle run`` and ``settle verify`` with ``--config replica.toml`` (straight from the
  replica's storage, :mod:`meterchain.settle_source`): every file the two runs write is
  byte for byte the same, and each run verifies against the other source;
- ``settle prove`` of a member's readings either way gives the same proof;
- refusals: a token without the scope, a point the replica does not know, a bad config.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import keyfiles
from meterchain.cli import main
from replica.auth import READ_CHAIN, READ_READINGS
from replica.config import Limits
from replica.meterdata.cli import assign
from replica.meterdata.query import MeterData
from replica.meterdata.registry import make_point
from replica.storage.base import Storage
from replica.tokens import create_token
from tests.replica.conftest import RunningReplica, StorageFactory
from tests.support.chains import gateway_key
from tests.support.meterdata import seal_readings
from tests.support.vectorhof import DAY, MEMBERS, community_toml, north_readings, plant_readings

COMMUNITY = community_toml("vectorhof", {"community": 11000, "grid_supply": 28000,
                                         "feed_in": 7000, "grid_fee": 1500}) + MEMBERS
POINTS = {  # point -> (role, member, gateway name, meter)
    "AT001-anna": ("grid", "anna", "north", "anna-grid"),
    "AT001-bert-c": ("grid", "bert", "north", "bert-grid"),
    "AT001-bert-g": ("pv", "bert", "north", "bert-pv"),
    "AT001-plant": ("pv", "plant", "plant", "plant-pv"),
}


def _toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string


@pytest.fixture
def live(tmp_path: Path, storage_factory: StorageFactory,
         make_replica: Callable[..., RunningReplica]) -> dict[str, Any]:
    utility_pub = keyfiles.generate_utility_key(tmp_path / "utility")
    utility_key = tmp_path / "utility" / keyfiles.UTILITY_KEY
    storage: Storage = storage_factory.open()
    north, plant = gateway_key(b"live-north"), gateway_key(b"live-plant")
    storage.enroll(north, "north", "vectorhof", 1)
    storage.enroll(plant, "plant", "field", 1)
    rep = make_replica(Limits(rate_per_gateway=0.0), utility_key, storage)
    for key, blocks in ((north, seal_readings(b"live-north", north_readings(), per_block=60)),
                        (plant, seal_readings(b"live-plant", plant_readings(), per_block=24,
                                              recipient_key=utility_pub))):
        r = rep.push(key, blocks)
        assert r.status_code == 200, r.text
    md = MeterData(storage)
    for point, (role, member, gw, meter) in POINTS.items():
        md.store.put_point(make_point(point, role, member=member))
        assign(md, point, gw, meter, 0, None)
    now = int(time.time() * 1000)
    member_token, _ = create_token(storage, "members", (READ_READINGS,), now)
    chain_token, _ = create_token(storage, "mirror", (READ_CHAIN,), now)
    files = {}
    for name, text in (("member.token", member_token), ("chain.token", chain_token)):
        files[name] = tmp_path / name
        files[name].write_text(text + "\n")
        files[name].chmod(0o600)
    cfg = tmp_path / "replica.toml"
    cfg.write_text(f"[storage]\nurl = {_toml_string(storage_factory.url)}\n"
                   f"[keys]\nutility_secret_key = {_toml_string(str(utility_key))}\n")
    community = tmp_path / "community.toml"
    community.write_text(COMMUNITY)
    keyfiles.generate_gateway_key(tmp_path / "operator")
    return {"tmp": tmp_path, "url": rep.url, "config": cfg, "community": community,
            "key": tmp_path / "operator" / keyfiles.GATEWAY_KEY, "north": north,
            "plant": plant, "member_token": member_token, **files}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_settle_over_http_and_from_storage_agree_byte_for_byte(
        live: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--community", str(live["community"])]
    over_http = ["--replica", live["url"], "--token-file", str(live["member.token"])]
    from_storage = ["--config", str(live["config"])]
    outs = {}
    for name, source in (("http", over_http), ("storage", from_storage)):
        outs[name] = live["tmp"] / f"settled-{name}"
        code, out, err = _run(capsys, "settle", "run", *common, "--period", DAY, *source,
                              "--key", str(live["key"]), "--out", str(outs[name]))
        assert code == 0, err
        assert "settled vectorhof 2026-11-02 revision 0: 3 members" in out
    http_files, storage_files = _files(outs["http"]), _files(outs["storage"])
    assert set(http_files) == {
        "settlement.json", "intervals.json",
        *(f"members/{m}.{ext}" for m in ("anna", "bert", "plant") for ext in ("json", "csv"))}
    assert http_files == storage_files

    # What was settled is what the replica holds: both gateways (the plant's payloads
    # sealed, read with the utility key), every interval of the day.
    doc = json.loads(http_files["settlement.json"])["document"]
    inputs = json.loads(http_files["intervals.json"])
    assert {s["gateway"] for s in doc["sources"]} == {live["north"].hex(), live["plant"].hex()}
    assert all(len(rows) == 96 for rows in inputs["points"].values())
    assert {q for _t, _wh, q in inputs["points"]["AT001-plant"]} == {"M"}
    # anna's one-hour gap is filled but not measured: those intervals are provisional
    assert {q for _t, _wh, q in inputs["points"]["AT001-anna"]} > {"M"}

    statements = {m: json.loads(http_files[f"members/{m}.json"])
                  for m in ("anna", "bert", "plant")}
    ch = {m: s["channels_wh"] for m, s in statements.items()}
    for c in ch.values():
        assert 0 <= c["G.03_covered"] <= min(c["G.01_use"], c["G.02_allocated"])
        assert c["grid_import"] == c["G.01_use"] - c["G.03_covered"]
    assert sum(c["G.03_covered"] for c in ch.values()) == sum(
        c["G.01_generation"] - c["P.01_surplus"] for c in ch.values()) > 0
    assert ch["plant"]["G.01_use"] == 0 and ch["plant"]["G.01_generation"] == 12_000
    assert statements["anna"]["provisional_intervals"] > 0
    assert doc["totals"]["covered"] == sum(c["G.03_covered"] for c in ch.values())

    # Each run verifies against either source: the document's root is recomputed.
    for name in ("http", "storage"):
        for source in (over_http, from_storage):
            code, out, err = _run(capsys, "settle", "verify",
                                  str(outs[name] / "settlement.json"), *common, *source)
            assert code == 0, out + err
            assert out.startswith(f"OK vectorhof {DAY} revision 0: recomputed root "
                                  f"{doc['root']}")

    # A member's proof with the signed readings behind its intervals: the same either way.
    proofs = {}
    for name, source in (("http", over_http), ("storage", from_storage)):
        proofs[name] = live["tmp"] / f"anna-{name}.json"
        code, out, err = _run(capsys, "settle", "prove", str(outs["http"] / "settlement.json"),
                              "--member", "anna", "-o", str(proofs[name]), *common, *source)
        assert code == 0, err
        assert "signed readings" in out
    assert proofs["http"].read_bytes() == proofs["storage"].read_bytes()
    code, out, _ = _run(capsys, "settle", "verify-proof", str(proofs["storage"]))
    assert code == 0 and "signed readings behind its intervals proven" in out
    assert "meters anna-grid" in out


def test_settle_refusals_over_http_and_from_storage(
        live: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    base = ["settle", "run", "--community", str(live["community"]), "--period", DAY,
            "--key", str(live["key"])]
    # a token without the members' scope: refused by the replica, the token never shown
    code, out, err = _run(capsys, *base, "--out", str(live["tmp"] / "a"), "--replica",
                          live["url"], "--token-file", str(live["chain.token"]))
    assert code == 2 and "answered 403" in err and "read:readings" in err, err
    assert live["chain.token"].read_text().strip() not in err + out
    # no token at all
    code, _, err = _run(capsys, *base, "--out", str(live["tmp"] / "b"), "--replica",
                        live["url"])
    assert code == 2 and "answered 401" in err, err
    # a point the replica does not know, either way
    other = live["tmp"] / "other.toml"
    other.write_text(COMMUNITY.replace("AT001-plant", "AT001-nowhere"))
    for source in (["--replica", live["url"], "--token-file", str(live["member.token"])],
                   ["--config", str(live["config"])]):
        code, _, err = _run(capsys, "settle", "run", "--community", str(other), "--period",
                            DAY, "--key", str(live["key"]), "--out", str(live["tmp"] / "c"),
                            *source)
        assert code == 2 and "unknown-point" in err and "AT001-nowhere" in err, err
        assert "Traceback" not in err
    # a bad replica config names its key
    bad = live["tmp"] / "bad.toml"
    bad.write_text("[storage]\nurl = 5\n")
    code, _, err = _run(capsys, *base, "--out", str(live["tmp"] / "d"), "--config", str(bad))
    assert code == 2 and "storage.url" in err, err
    assert not (live["tmp"] / "a").exists() and not (live["tmp"] / "d").exists()
