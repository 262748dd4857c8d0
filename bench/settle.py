"""Benchmark: settling a month of a 1,000-member community with 50 producers.

    python bench/settle.py [--members 1000] [--producers 50] [--intervals 2976] [--json]

Rows: settlement run (engine + commitments + signature) for dynamic pro rata and for a
pay-as-clear market, each with a full verification (document check + recomputation
compared byte for byte), writing the statements, one member's proof (build and
verify offline). Targets on the 2-core machine: run <= 10 s pro rata, <= 30 s market,
verify <= run, proof <= 100 ms. Calibration (same run, before and after each mode;
the slowest and fastest are printed): SHA-256 of 200 bytes per second and a
pure-Python integer loop, since machine speed varies ~3x between sessions.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nacl.signing  # noqa: E402
from _common import add_common_args, peak_rss_mb, report, timed  # noqa: E402

from settlement.build import make_body, member_roots  # noqa: E402
from settlement.config import parse_community  # noqa: E402
from settlement.document import canonical, sign, verify_document  # noqa: E402
from settlement.engine import run  # noqa: E402
from settlement.period import Period  # noqa: E402
from settlement.proof import make_proof, verify_proof  # noqa: E402
from settlement.statements import read_statement, write_statements  # noqa: E402
from settlement.synthetic import community_toml, intervals  # noqa: E402
from settlement.verify import compare  # noqa: E402

START_MS = 1_796_083_200_000  # 2026-12-01T00:00:00Z
KEY = nacl.signing.SigningKey(bytes(range(32)))


def calibration() -> dict[str, float]:
    data = b"x" * 200
    n = 200_000
    t0 = time.perf_counter()
    for _ in range(n):
        hashlib.sha256(data).digest()
    sha = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    acc = 0
    for i in range(2_000_000):
        acc += i * 7 // 3
    loop = 2_000_000 / (time.perf_counter() - t0)
    return {"sha256_200b_per_s": round(sha), "python_int_ops_per_s": round(loop)}


def one_mode(mode: str, args: argparse.Namespace, out: Path) -> dict[str, object]:
    c = parse_community(community_toml(args.members, args.producers, mode=mode),
                        sha256="00" * 32)
    period = Period("bench", START_MS, START_MS + args.intervals * c.interval_ms)
    data = intervals(args.members, args.producers, START_MS, args.intervals)
    gc.collect()
    with timed() as t_run:
        result = run(c, period, data)
        roots = member_roots(result)
        signed = sign(make_body(result, data.sources, bytes(KEY.verify_key), None, roots),
                      KEY)
        blob = canonical(signed)
    with timed() as t_write:
        doc = verify_document(json.loads(blob))
        write_statements(result, out, doc.hash.hex(), 0)
    del result, roots
    gc.collect()
    with timed() as t_verify:
        doc = verify_document(json.loads(blob), bytes(KEY.verify_key))
        compare(doc, run(c, period, data), list(data.sources))
    member = c.consumers[len(c.consumers) // 2]
    with timed() as t_proof:
        lines = read_statement(out / "members" / f"{member}.json")["lines"]
        proof = make_proof(json.loads(blob), verify_document(json.loads(blob)), member, lines)
        verify_proof(json.loads(json.dumps(proof)), bytes(KEY.verify_key))
    totals = doc.body["totals"]
    return {"mode": mode, "members": args.members, "producers": args.producers,
            "intervals": args.intervals, "lines": totals["lines"],
            "run_s": round(t_run[0], 2), "verify_s": round(t_verify[0], 2),
            "write_statements_s": round(t_write[0], 2),
            "proof_ms": round(t_proof[0] * 1000, 1),
            "covered_share_pct": round(100 * totals["covered"] / max(1, totals["use"]), 1),
            "document_bytes": len(blob)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--producers", type=int, default=50)
    ap.add_argument("--intervals", type=int, default=2976)
    ap.add_argument("--modes", default="pro_rata,market")
    add_common_args(ap)
    args = ap.parse_args()
    cals = [calibration()]
    rows = []
    for mode in args.modes.split(","):
        with tempfile.TemporaryDirectory(prefix="settle-bench-") as tmp:
            rows.append(one_mode(mode, args, Path(tmp)))
        cals.append(calibration())  # the machine is shared: see how its speed moved
    by = {r["mode"]: r for r in rows}
    summary: dict[str, object] = {
        "sha256_200b_per_s": min(c["sha256_200b_per_s"] for c in cals),
        "sha256_200b_per_s_max": max(c["sha256_200b_per_s"] for c in cals),
        "python_int_ops_per_s": min(c["python_int_ops_per_s"] for c in cals),
        "python_int_ops_per_s_max": max(c["python_int_ops_per_s"] for c in cals)}
    for mode, target in (("pro_rata", 10.0), ("market", 30.0)):
        if mode in by:
            summary[f"{mode}_run_s"] = by[mode]["run_s"]
            summary[f"{mode}_run_target_s"] = target
            summary[f"{mode}_verify_over_run"] = round(
                float(by[mode]["verify_s"]) / max(1e-9, float(by[mode]["run_s"])), 2)
            summary[f"{mode}_proof_ms"] = by[mode]["proof_ms"]
    summary["peak_rss_mb_after"] = round(peak_rss_mb(), 1)
    report("settlement of a month", rows, summary, args.json)


if __name__ == "__main__":
    main()
