"""``meterchain replica mirror`` between real replica servers on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meterchain.cli import main
from tests.replica_tools.conftest import LiveReplica
from tests.support.chains import gateway_key, make_chain

SEED_A, SEED_B, SEED_C = b"mirror-a", b"mirror-b", b"mirror-c"
KEY_A, KEY_B, KEY_C = (gateway_key(s) for s in (SEED_A, SEED_B, SEED_C))
CHAIN_A = make_chain(SEED_A, 45, 2)
CHAIN_B = make_chain(SEED_B, 6, 3)


def source_with_chains(replicas) -> LiveReplica:
    src = replicas()
    for key, chain in ((KEY_A, CHAIN_A[:30]), (KEY_B, CHAIN_B)):
        src.enroll(key)
        src.push_ok(key, chain)
    src.enroll(KEY_C)  # enrolled, no blocks
    return src


def run_mirror(capsys: pytest.CaptureFixture[str], src: LiveReplica, *target: str
               ) -> tuple[int, dict]:
    code = main(["replica", "mirror", "--from", src.url, *target, "--json",
                 "--page-size", "8", "--push-batch", "5", "-q"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def status(report: dict) -> dict[str, tuple[str, int]]:
    return {g["key"][:8]: (g["status"], g["stored"]) for g in report["gateways"]}


def test_mirror_copies_incrementally_and_a_rerun_is_harmless(replicas, capsys) -> None:
    src, dst = source_with_chains(replicas), replicas()
    dst.enroll(KEY_A)
    dst.enroll(KEY_B)
    dst.push_ok(KEY_B, CHAIN_B[:2])  # already holds a prefix
    code, report = run_mirror(capsys, src, "--to", dst.url)
    assert code == 0 and report["ok"]
    assert status(report) == {KEY_A.hex()[:8]: ("copied", 30), KEY_B.hex()[:8]: ("copied", 4),
                              KEY_C.hex()[:8]: ("not-enrolled", 0)}
    assert dst.records(KEY_A) == src.records(KEY_A)
    assert dst.records(KEY_B) == src.records(KEY_B)
    before = dst.snapshot()

    code, report = run_mirror(capsys, src, "--to", dst.url)  # nothing new: a no-op
    assert code == 0 and report["stored"] == 0
    assert dst.snapshot() == before

    src.push_ok(KEY_A, CHAIN_A[30:])  # the source grows: only the new blocks move
    code, report = run_mirror(capsys, src, "--to", dst.url)
    assert code == 0 and status(report)[KEY_A.hex()[:8]] == ("copied", 15)
    assert dst.records(KEY_A) == [b.encode() for b in CHAIN_A]


def test_mirror_into_local_storage_by_config(replicas, capsys, tmp_path: Path) -> None:
    src, dst = source_with_chains(replicas), replicas()
    dst.enroll(KEY_A)
    cfg = tmp_path / "local.toml"
    cfg.write_text(f'[storage]\nurl = "sqlite:///{dst.db}"\n'
                   "[limits]\nmax_future_skew_ms = 315360000000\n")
    code, report = run_mirror(capsys, src, "--config", str(cfg))
    assert code == 0 and status(report)[KEY_A.hex()[:8]] == ("copied", 30)
    assert dst.records(KEY_A) == src.records(KEY_A)
    assert dst.storage.gateway(KEY_A).height == 29  # type: ignore[union-attr]


def test_source_serving_an_invalid_block_is_refused_and_nothing_invalid_stored(
        replicas, capsys) -> None:
    src, dst = source_with_chains(replicas), replicas()
    dst.enroll(KEY_A)
    record = src.records(KEY_A)[12]
    bad = record[:-5] + bytes([record[-5] ^ 0x01]) + record[-4:]
    assert src.sql("UPDATE blocks SET record = ? WHERE gateway_key = ? AND height = 12",
                   bad, KEY_A) == 1
    code, report = run_mirror(capsys, src, "--to", dst.url)
    assert code == 1 and not report["ok"]
    (row,) = [g for g in report["gateways"] if g["key"] == KEY_A.hex()]
    assert row["status"] == "invalid-source" and row["height"] == 12
    assert "payload-hash-mismatch" in row["detail"]
    assert dst.records(KEY_A) == [b.encode() for b in CHAIN_A[:12]]


def test_diverged_copy_is_reported_and_not_overwritten(replicas, capsys) -> None:
    src, dst = source_with_chains(replicas), replicas()
    dst.enroll(KEY_A)
    other = CHAIN_A[:5] + make_chain(SEED_A, 3, 2, prev=CHAIN_A[4], meter_id="meter-z")
    dst.push_ok(KEY_A, other)
    before = dst.snapshot()
    code, report = run_mirror(capsys, src, "--to", dst.url)
    assert code == 1
    (row,) = [g for g in report["gateways"] if g["key"] == KEY_A.hex()]
    assert row["status"] == "diverged" and row["height"] == 7
    assert dst.snapshot() == before


def test_mirrored_copies_then_audit_clean(replicas, capsys) -> None:
    src, dst = source_with_chains(replicas), replicas()
    for key in (KEY_A, KEY_B, KEY_C):
        dst.enroll(key)
    assert run_mirror(capsys, src, "--to", dst.url)[0] == 0
    assert main(["audit", src.url, dst.url, "-q"]) == 0


def test_unreachable_source_is_a_usage_error(replicas, capsys) -> None:
    dst = replicas()
    assert main(["replica", "mirror", "--from", "http://127.0.0.1:9", "--to", dst.url,
                 "-q"]) == 2
    assert "cannot mirror" in capsys.readouterr().err
