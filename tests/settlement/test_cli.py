"""``meterchain settle``: run, verify, prove, verify-proof, re-settlement, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from keyfiles import generate_gateway_key
from meterchain.cli import main
from settlement.source import IntervalData
from settlement.synthetic import intervals
from tests.support.vectorhof import community_toml

from .conftest import small

TOML = community_toml("small", {"community": 11000, "grid_supply": 28000, "feed_in": 7000,
                                 "grid_fee": 1500})


def _community(tmp: Path) -> Path:
    rows = "".join(
        f'\n[[members]]\nid = "m{i:04d}"\nconsumption = ["m{i:04d}-c"]\n'
        + (f'generation = ["m{i:04d}-g"]\n' if i < 2 else "") for i in range(6))
    p = tmp / "community.toml"
    p.write_text(TOML + rows)
    return p


def _intervals(tmp: Path, data: IntervalData, name: str = "intervals.json") -> Path:
    p = tmp / name
    p.write_text(json.dumps(data.as_json()))
    return p


@pytest.fixture
def settled(tmp_path: Path) -> dict[str, Any]:
    generate_gateway_key(tmp_path / "keys")
    _, period, _ = small()
    data = intervals(6, 2, period.start_ms, 96, estimated_every=30)
    args = {"community": _community(tmp_path), "intervals": _intervals(tmp_path, data),
            "key": tmp_path / "keys" / "gateway.key", "out": tmp_path / "out",
            "tmp": tmp_path, "start": period.start_ms}
    assert main(["settle", "run", "--community", str(args["community"]), "--period",
                 "2026-06-21", "--intervals", str(args["intervals"]), "--key",
                 str(args["key"]), "--out", str(args["out"])]) == 0
    return args


def test_run_writes_document_and_statements(settled: dict[str, Any], capsys: Any) -> None:
    out = settled["out"]
    doc = json.loads((out / "settlement.json").read_text())
    assert doc["document"]["community"]["name"] == "small"
    st = json.loads((out / "members" / "m0003.json").read_text())
    assert st["channels_wh"]["G.03_covered"] <= st["channels_wh"]["G.01_use"]
    assert st["counterparties"] and {c["role"] for c in st["counterparties"]} == {"bought"}
    csv = (out / "members" / "m0003.csv").read_text().splitlines()
    assert csv[0].startswith("interval_start_ms,quality,provisional,G.01_use,G.02_allocated,"
                             "G.03_covered,G.01_generation,P.01_surplus")
    assert len(csv) == 97


def test_verify_recomputes_and_names_the_first_differing_line(
        settled: dict[str, Any], capsys: Any) -> None:
    doc = str(settled["out"] / "settlement.json")
    common = ["--community", str(settled["community"])]
    assert main(["settle", "verify", doc, *common, "--intervals",
                 str(settled["intervals"])]) == 0
    assert capsys.readouterr().out.startswith("OK small 2026-06-21 revision 0")
    raw = json.loads(Path(settled["intervals"]).read_text())
    raw["points"]["m0005-c"][40][1] += 1
    other = settled["tmp"] / "other.json"
    other.write_text(json.dumps(raw))
    assert main(["settle", "verify", doc, *common, "--intervals", str(other)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED") and "first differing line: document '" in out
    # m0005 used 1 Wh more at 10:00: the first line in document order that changed is
    # a producer's (lower id) counterparty line or an interval line of that interval
    line = out.split("first differing line: document '")[1].split("'")[0]
    assert line.startswith("C,") or f",{raw['points']['m0005-c'][40][0]}," in line


def test_prove_and_verify_proof(settled: dict[str, Any], capsys: Any) -> None:
    doc = str(settled["out"] / "settlement.json")
    proof = settled["tmp"] / "proof.json"
    assert main(["settle", "prove", doc, "--member", "m0001", "-o", str(proof)]) == 0
    key = (settled["tmp"] / "keys" / "gateway.pub").read_text().strip()
    assert main(["settle", "verify-proof", str(proof), "--operator-key", key]) == 0
    assert "OK m0001 in small 2026-06-21" in capsys.readouterr().out
    p = json.loads(proof.read_text())
    p["lines"][0] = p["lines"][0].replace(",M,", ",S,").replace(",E,", ",S,")
    proof.write_text(json.dumps(p))
    assert main(["settle", "verify-proof", str(proof)]) == 1
    assert capsys.readouterr().out.startswith("FAILED")
    assert main(["settle", "prove", doc, "--member", "../../etc/passwd"]) == 2
    assert "is not in" in capsys.readouterr().err


def test_resettlement_references_the_previous_version(settled: dict[str, Any],
                                                      capsys: Any) -> None:
    measured = intervals(6, 2, settled["start"], 96)
    new = _intervals(settled["tmp"], measured, "measured.json")
    out2 = settled["tmp"] / "out2"
    old = settled["out"] / "settlement.json"
    assert main(["settle", "run", "--community", str(settled["community"]), "--period",
                 "2026-06-21", "--intervals", str(new), "--key", str(settled["key"]),
                 "--out", str(out2), "--previous", str(old)]) == 0
    text = capsys.readouterr().out
    assert "revision 1" in text and "member(s) changed" in text
    doc = json.loads((out2 / "settlement.json").read_text())["document"]
    assert doc["revision"] == 1 and doc["previous"] is not None
    diffs = json.loads((out2 / "differences.json").read_text())
    assert diffs["previous"] == doc["previous"] and diffs["members"]
    assert main(["settle", "verify-chain", str(old), str(out2 / "settlement.json")]) == 0
    assert "revisions 0..1 chained" in capsys.readouterr().out
    assert main(["settle", "verify-chain", str(out2 / "settlement.json"), str(old)]) == 1
    assert "must start at revision 0" in capsys.readouterr().out
    assert main(["settle", "verify-chain", str(old), str(old)]) == 1
    assert "follows revision 0" in capsys.readouterr().out
    before = (out2 / "settlement.json").read_bytes()
    assert main(["settle", "run", "--community", str(settled["community"]), "--period",
                 "2026-06-21", "--intervals", str(new), "--key", str(settled["key"]),
                 "--out", str(out2)]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert (out2 / "settlement.json").read_bytes() == before


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: Any) -> None:
    bad = tmp_path / "community.toml"
    bad.write_text('[community]\nname = "x"\ntime_zone = "Nowhere/City"\n')
    assert main(["settle", "run", "--community", str(bad), "--period", "2026-11",
                 "--intervals", "x", "--key", "k", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "community.time_zone" in err and "members" in err and "Traceback" not in err
    good = _community(tmp_path)
    assert main(["settle", "run", "--community", str(good), "--period", "2026-13",
                 "--intervals", "x", "--key", "k", "--out", str(tmp_path / "o")]) == 2
    assert "period must be" in capsys.readouterr().err
    (tmp_path / "i.json").write_text('{"type": "meterchain-intervals", "version": 1, '
                                     '"interval_ms": 900000, "points": {"a": [[1, 2, "M"]]}}')
    generate_gateway_key(tmp_path / "keys")
    assert main(["settle", "run", "--community", str(good), "--period", "2026-11",
                 "--intervals", str(tmp_path / "i.json"), "--key",
                 str(tmp_path / "keys" / "gateway.key"), "--out", str(tmp_path / "o")]) == 2
    assert "not on the 900000 ms grid" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
