"""`meterchain replica meter|reindex|intervals|readings|status` on both backends: a
registry file, names and dates on the command line, reindex with identical rows, and
one-line errors for bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from meterchain.cli import main
from replica.meterdata.query import MeterData
from tests.replica.conftest import StorageFactory
from tests.replica.test_meterdata_index import DAY0, STEP, household, push, service
from tests.support.chains import gateway_key
from tests.support.meterdata import register_readings, seal_readings

REGISTRY = """
[[point]]
id = "miller-grid"
role = "grid"
member = "Miller"
rated_max_w = 40000
  [[point.meter]]
  gateway = "north"
  meter = "p1"

[[point]]
id = "miller-pv"
role = "pv"
member = "Miller"
export = ["1-0:2.8.0"]
  [[point.meter]]
  gateway = "north"
  meter = "inverter"
  from = "2025-11-01"
"""


@pytest.fixture
def replica_toml(storage_factory: StorageFactory, tmp_path: Path) -> Path:
    storage = storage_factory.open()
    key = gateway_key(b"cli-gw")
    storage.enroll(key, "north", "roof", 1)
    rs = household(300)
    rs += register_readings("inverter", "1-0:2.8.0", DAY0 - 600_000, n=300, step_ms=STEP,
                            wh_per_step=lambda k: 20 if 100 <= k < 180 else 0)
    push(service(storage), key, seal_readings(b"cli-gw", rs, per_block=60))
    cfg = tmp_path / "replica.toml"
    cfg.write_text(f'[storage]\nurl = "{storage_factory.url}"\n')
    return cfg


def run(cfg: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["replica", *args, "--config", str(cfg)])
    out, err = capsys.readouterr()
    return code, out, err


def test_registry_file_list_and_intervals_by_name_and_date(
        replica_toml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = tmp_path / "registry.toml"
    reg.write_text(REGISTRY)
    code, out, err = run(replica_toml, "meter", "import", str(reg), capsys=capsys)
    assert code == 0, err
    code, out, _ = run(replica_toml, "list", capsys=capsys)
    assert code == 0 and "miller-grid" in out and "north/p1" in out and "north/inverter" in out
    code, out, _ = run(replica_toml, "meter", "list", "--json", capsys=capsys)
    doc = json.loads(out)
    assert doc["unassigned"] == []
    assert doc["points"][0]["rated_max_w"] == 40000

    code, out, err = run(replica_toml, "intervals", "--gateway", "north", "--member", "Miller",
                         "--from", "2025-11-30", "--to", "2025-11-30", "--format", "json",
                         capsys=capsys)
    assert code == 0, err
    doc = json.loads(out)
    got = {(s["point"], s["direction"]): s for s in doc["series"]}
    assert set(got) == {("miller-grid", "import"), ("miller-grid", "export"),
                        ("miller-pv", "export")}
    assert got[("miller-grid", "import")]["registers"] == ["1-0:1.8.1", "1-0:1.8.2"]
    assert len(got[("miller-grid", "import")]["intervals"]) == 96
    assert got[("miller-pv", "export")]["total_wh"] == 80 * 20

    code, out, _ = run(replica_toml, "intervals", "--point", "miller-pv", "--from",
                       "2025-11-30T08:00+01:00", "--to", "2025-11-30T10:00+01:00",
                       "--format", "csv", "--traces", capsys=capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 8 and all(r["quality"] == "measured" for r in rows)

    code, out, _ = run(replica_toml, "intervals", "--gateway", "north", "--meter", "p1",
                       "--from", "2025-11-30", "--to", "2025-11-30", "--interval", "1h",
                       capsys=capsys)
    assert code == 0 and "total" in out and "measured" in out
    assert "miller-grid" not in out or "north/p1" in out


def test_reindex_gives_identical_rows(replica_toml: Path, storage_factory: StorageFactory,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    md = MeterData(storage_factory.open())
    before = md.store.index_rows()
    assert len(before) == 5 * 300
    code, out, err = run(replica_toml, "reindex", "-q", capsys=capsys)
    assert code == 0, err
    assert f"indexed {len(before)} readings" in out
    assert md.store.index_rows() == before


def test_readings_and_status(replica_toml: Path, capsys: pytest.CaptureFixture[str],
                             tmp_path: Path) -> None:
    out_file = tmp_path / "r.csv"
    code, _, err = run(replica_toml, "readings", "--gateway", "north", "--meter", "inverter",
                       "--from", "2025-11-30T00:00+01:00", "--to", "2025-11-30T00:30+01:00",
                       "-o", str(out_file), capsys=capsys)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out_file.read_text())))
    assert len(rows) == 6 and {r["meter_id"] for r in rows} == {"inverter"}
    code, out, _ = run(replica_toml, "status", "--json", capsys=capsys)
    doc = json.loads(out)
    assert code == 0 and doc["gateways"][0]["name"] == "north"
    assert doc["gateways"][0]["state"] in ("silent", "behind")
    code, out, _ = run(replica_toml, "status", capsys=capsys)
    assert "north" in out and "gateway(s)" in out


@pytest.mark.parametrize("args,words", [
    (["intervals", "--gateway", "north", "--from", "yesterday", "--to", "2025-11-30"],
     "from"),
    (["intervals", "--gateway", "south", "--from", "2025-11-30", "--to", "2025-11-30"],
     "south"),
    (["intervals", "--gateway", "north", "--from", "2025-11-30", "--to", "2025-11-30",
      "--tz", "Nowhere/City"], "time zone"),
    (["meter", "add", "x y", "--role", "grid"], "letters"),
    (["meter", "add", "ok", "--role", "windmill"], "role"),
    (["meter", "assign", "nope", "--gateway", "north", "--meter", "p1"], "nope"),
    (["readings", "--gateway", "north", "--register", "energy"], "OBIS"),
    (["status", "--silent-after", "soon"], "duration"),
])
def test_bad_input_is_one_line_and_exit_2(replica_toml: Path, args: list[str], words: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(replica_toml, *args, capsys=capsys)
    assert code == 2, (out, err)
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_revoke_takes_a_gateway_name(replica_toml: Path, storage_factory: StorageFactory,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(replica_toml, "revoke", "north", "--at", "2026-01-31T12:00:00Z",
                         capsys=capsys)
    assert code == 0, err
    rec = storage_factory.open().gateway(gateway_key(b"cli-gw"))
    assert rec is not None and rec.revoked_at_ms == 1_769_860_800_000
    code, _, err = run(replica_toml, "revoke", "south", capsys=capsys)
    assert code == 2 and "PUBKEY" in err
