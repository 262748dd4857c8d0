"""The ledger commands, run as real processes (`python -m meterchain.cli ...`)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import keyfiles as keys
import ledger
from agent.storage.store import BlockStore, StoreOptions
from tests.support.store import make_blocks, public_key

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = make_blocks(20, meters=2)  # salts are random: build once, compare against these


def mc(*args: object, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meterchain", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def ledger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli") / "ledger"
    with BlockStore.open(d, options=StoreOptions(segment_bytes=12 * 1024)) as s:
        for i in range(0, 20, 4):
            s.append_many(BLOCKS[i:i + 4])
    return d


def test_keygen_writes_private_files_0600_and_refuses_overwrite(tmp_path: Path) -> None:
    p = mc("keygen", "--out", tmp_path / "k", "--utility")
    assert p.returncode == 0, p.stderr
    gw = (tmp_path / "k" / "gateway.pub").read_text().strip()
    ut = (tmp_path / "k" / "utility.pub").read_text().strip()
    assert f"gateway public key: {gw}" in p.stdout and f"utility public key: {ut}" in p.stdout
    for name in ("gateway.key", "utility.key"):
        assert stat.S_IMODE((tmp_path / "k" / name).stat().st_mode) == 0o600
        secret = (tmp_path / "k" / name).read_text().splitlines()[1]
        assert secret not in p.stdout + p.stderr
    before = (tmp_path / "k" / "gateway.key").read_bytes()
    one_line_error(mc("keygen", "--out", tmp_path / "k"), "refusing to overwrite")
    assert (tmp_path / "k" / "gateway.key").read_bytes() == before


def test_verify_ledger_and_export(ledger_dir: Path, tmp_path: Path) -> None:
    head = BLOCKS[-1]
    p = mc("verify", ledger_dir)
    assert p.returncode == 0, p.stderr
    assert "height verified: 19" in p.stdout and f"head hash: {head.hash.hex()}" in p.stdout
    out = tmp_path / "ledger.mcx"
    p = mc("export", ledger_dir, "-o", out)
    assert p.returncode == 0 and "20 blocks" in p.stdout
    p = mc("verify", out, "--gateway-key", public_key().hex())
    assert p.returncode == 0 and "height verified: 19" in p.stdout
    one_line_error(mc("export", ledger_dir, "-o", out), "refusing to overwrite")


def test_verify_names_the_first_failing_height(ledger_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.mcx"
    assert mc("export", ledger_dir, "-o", out).returncode == 0
    data = bytearray(out.read_bytes())
    # the signature of block 7: file header 28, then (u32 length + record) per block
    pos = 28
    for _ in range(7):
        pos += 4 + int.from_bytes(data[pos:pos + 4], "big")
    data[pos + 4 + ledger.HEADER_SIZE + 5] ^= 0x10
    out.write_bytes(bytes(data))
    p = mc("verify", out)
    assert p.returncode == 1
    assert "at height 7: bad-signature" in p.stdout


def test_verify_reports_damage_inside_a_ledger(ledger_dir: Path, tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(ledger_dir, d)
    seg = sorted((d / "segments").glob("*.seg"))[0]
    data = bytearray(seg.read_bytes())
    data[400] ^= 0xFF
    seg.write_bytes(bytes(data))
    p = mc("verify", d)
    assert p.returncode == 1 and "FAILED" in p.stdout
    assert "at height 0: malformed:" in p.stdout and "CRC-32 mismatch" in p.stdout


def test_verify_with_the_wrong_gateway_key_fails(ledger_dir: Path) -> None:
    p = mc("verify", ledger_dir, "--gateway-key", "11" * 32)
    assert p.returncode == 1 and "at height 0: key-change" in p.stdout


def test_show(ledger_dir: Path) -> None:
    p = mc("show", ledger_dir)
    assert p.returncode == 0, p.stderr
    blocks = BLOCKS
    assert "heights     : 0..19" in p.stdout
    assert "blocks      : 20 (0 sealed" in p.stdout
    assert f"readings    : {sum(b.header.reading_count for b in blocks)}" in p.stdout
    assert f"hash {blocks[-1].hash.hex()}" in p.stdout
    n_seg = len(list((ledger_dir / "segments").glob("*.seg")))
    assert n_seg > 1 and f"segments    : {n_seg}" in p.stdout


def test_prove_and_verify_proof(ledger_dir: Path, tmp_path: Path) -> None:
    proof = tmp_path / "p.json"
    p = mc("prove", ledger_dir, "--height", 5, "--index", 3, "-o", proof)
    assert p.returncode == 0, p.stderr
    want = ledger.block_readings(BLOCKS[5])[3][0]
    assert want.meter_id in p.stdout and want.obis in p.stdout
    p = mc("verify-proof", proof, "--gateway-key", public_key().hex())
    assert p.returncode == 0, p.stderr
    assert "reading 3 of 8 is in block 5" in p.stdout and want.decimal in p.stdout
    doc = json.loads(proof.read_text())
    doc["reading"] = doc["reading"][:-2] + ("00" if doc["reading"][-2:] != "00" else "01")
    proof.write_text(json.dumps(doc))
    p = mc("verify-proof", proof)
    assert p.returncode == 1 and "FAILED" in p.stdout and "bad-proof" in p.stdout
    p = mc("prove", ledger_dir, "--height", 5, "--index", 0)  # to stdout
    assert p.returncode == 0 and json.loads(p.stdout)["height"] == 5


def test_prove_and_show_a_sealed_ledger(tmp_path: Path) -> None:
    kdir = tmp_path / "k"
    upub = keys.generate_utility_key(kdir)
    blocks = make_blocks(2)
    sealed = ledger.seal_block(bytes(range(32)), blocks[1].header,
                               ledger.block_readings(blocks[1]) and
                               [r for r, _ in ledger.block_readings(blocks[1])],
                               [bytes(16)] * blocks[1].header.reading_count,
                               blocks[1].header.time_end_ms, blocks[1].header.time_end_ms,
                               recipient_key=upub, ephemeral_sk=bytes(range(1, 33)))
    with BlockStore.open(tmp_path / "l") as s:
        s.append_many([blocks[0], blocks[1], sealed])
    one_line_error(mc("prove", tmp_path / "l", "--height", 2, "--index", 0),
                   "sealed", "--utility-key")
    p = mc("prove", tmp_path / "l", "--height", 2, "--index", 1, "--utility-key",
           kdir / "utility.key", "-o", tmp_path / "p.json")
    assert p.returncode == 0, p.stderr
    assert mc("verify-proof", tmp_path / "p.json").returncode == 0
    assert "(1 sealed" in mc("show", tmp_path / "l").stdout
    (kdir / "utility.key").chmod(0o640)
    one_line_error(mc("prove", tmp_path / "l", "--height", 2, "--index", 1, "--utility-key",
                      kdir / "utility.key"), "chmod 600", "0640")


def test_bad_input_is_one_clear_line(ledger_dir: Path, tmp_path: Path) -> None:
    one_line_error(mc("verify", tmp_path / "missing"), "no such")
    one_line_error(mc("show", tmp_path / "missing"), "no such")
    (tmp_path / "notledger").mkdir()
    (tmp_path / "notledger" / "x").write_text("x")
    one_line_error(mc("show", tmp_path / "notledger"), "not a ledger")
    one_line_error(mc("export", tmp_path / "notledger", "-o", tmp_path / "o"), "not a ledger")
    one_line_error(mc("prove", ledger_dir, "--height", 99, "--index", 0), "height 99")
    one_line_error(mc("prove", ledger_dir, "--height", 1, "--index", 99), "index 99")
    one_line_error(mc("verify-proof", tmp_path / "nope.json"), "nope.json")
    one_line_error(mc("verify", ledger_dir, "--gateway-key", "zz"), "zz")
    one_line_error(mc("prove", ledger_dir, "--height", 1, "--index", 0, "--utility-key",
                      tmp_path / "none.key"), "not found")
    (tmp_path / "taken.json").write_text("keep me")
    one_line_error(mc("prove", ledger_dir, "--height", 1, "--index", 0, "-o",
                      tmp_path / "taken.json"), "refusing to overwrite")
    assert (tmp_path / "taken.json").read_text() == "keep me"
    (tmp_path / "f.bin").write_bytes(b"junk")
    p = mc("verify", tmp_path / "f.bin")
    assert p.returncode == 1 and "not a meterchain export" in p.stdout


def test_demo_keeps_and_continues_its_ledger(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    p = mc("demo", "--ledger-only", "--ledger", d, "--blocks", 5)
    assert p.returncode == 0, p.stderr
    assert "heights 0..4" in p.stdout and "verified" in p.stdout
    p = mc("demo", "--ledger-only", "--ledger", d, "--blocks", 3)
    assert p.returncode == 0 and "continuing" in p.stdout and "heights 5..7" in p.stdout
    p = mc("verify", d)
    assert p.returncode == 0 and "height verified: 7" in p.stdout
    p = mc("demo", "--ledger-only", "--blocks", 2)
    assert p.returncode == 0 and "temporary ledger is removed" in p.stdout
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file").write_text("x")
    one_line_error(mc("demo", "--ledger-only", "--ledger", tmp_path / "other"),
                   "not a demo ledger")


EXPORT_VECTORS = {v["name"]: v for v in json.loads(
    (ROOT / "tests" / "vectors" / "exports.json").read_text())["files"]}


@pytest.mark.parametrize("name", [
    "valid/pruned-first-height-1", "file-header/version-2", "framing/length-261",
    "chain/pruned-first-record-claims-2^63+1", "chain/pruned-first-record-time-inverted+resigned",
    "digest/bit-flip",
])
def test_verify_export_reports_the_vectors_reason_and_chain_position(name: str,
                                                                     tmp_path: Path) -> None:
    vec = EXPORT_VECTORS[name]
    f = tmp_path / "x.mcexport"
    f.write_bytes(bytes.fromhex(vec["export"]))
    p = mc("verify", f)
    if vec["want_error"] is None:
        assert p.returncode == 0 and f"height verified: {vec['head_height']}" in p.stdout
        return
    assert p.returncode == 1, p
    first = p.stdout.splitlines()[0]
    where = "" if vec["want_height"] is None else f" at height {vec['want_height']}"
    assert first.startswith(f"FAILED verifying {f}{where}: {vec['want_error']}: "), first


PROOF_VECTORS = {v["name"]: v for v in json.loads(
    (ROOT / "tests" / "vectors" / "proofs.json").read_text())["files"]}


@pytest.mark.parametrize("name", ["valid", "hex/uppercase-header", "hex/space-inside-signature",
                                  "int/index-2.0", "header/height-mismatch"])
def test_verify_proof_follows_the_proof_file_vectors(name: str, tmp_path: Path) -> None:
    vec = PROOF_VECTORS[name]
    f = tmp_path / "p.json"
    f.write_bytes(bytes.fromhex(vec["file"]))
    p = mc("verify-proof", f, "--gateway-key", vec["gateway_key"])
    if vec["want_error"] is None:
        assert p.returncode == 0 and p.stdout.startswith("OK:"), p
        return
    assert p.returncode == 1, p
    where = "" if vec["want_height"] is None else f" at height {vec['want_height']}"
    assert p.stdout.startswith(f"FAILED verifying proof {f}{where}: {vec['want_error']}: "), p
