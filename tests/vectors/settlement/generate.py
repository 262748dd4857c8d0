"""Generate the settlement test vectors (docs/settlement.md section 9) from fixed keys.

    python tests/vectors/settlement/generate.py [--out DIR]

Writes ``settlement.json`` deterministically (same bytes on every run): for each of
three small communities (pro rata, static keys with unused shares to the community,
a pay-as-clear market with a grid fee) the community.toml text, the interval energy
document, every output line with its hash, the member roots and leaves, the document
body's canonical bytes, its hash, the operator's signature and a member proof; for the
first, also a partial proof (two lines with their paths) and systematic corruptions
of the signed document and the proof, each with ``want_error`` (the error class) and
its message.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import nacl.signing  # noqa: E402

from settlement.build import make_body  # noqa: E402
from settlement.config import parse_community  # noqa: E402
from settlement.document import (  # noqa: E402
    canonical,
    document_hash,
    line_hash,
    member_leaf,
    member_root,
    sign,
    verify_document,
)
from settlement.engine import run  # noqa: E402
from settlement.errors import DocumentError  # noqa: E402
from settlement.period import parse_period  # noqa: E402
from settlement.proof import make_proof, verify_proof  # noqa: E402
from settlement.source import parse_intervals  # noqa: E402

# hard-coded key material (never use it anywhere else)
OPERATOR_SEED = bytes.fromhex("5e771e0e4d1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3")
T0 = 1_793_574_000_000  # 2026-11-02T00:00:00+01:00 (Europe/Vienna)
Q = 900_000

HEAD = """[community]
name = "vectorhof"
time_zone = "Europe/Vienna"
interval_minutes = 15
currency = "EUR"
"""
MEMBERS = """
[[members]]
id = "anna"
consumption = ["AT001-anna"]
key = 1
priority = 0
bid_limit = 16000

[[members]]
id = "bert"
consumption = ["AT001-bert-c"]
generation = ["AT001-bert-g"]
key = 1
bid_limit = 14000
offer_limit = 7000

[[members]]
id = "plant"
generation = ["AT001-plant"]
offer_limit = 8000
"""
PRICES = """
[prices]
community = 11000
grid_supply = 28000
feed_in = 7000
"""
COMMUNITIES = {
    "pro_rata": HEAD + '\n[sharing]\nmode = "pro_rata"\n' + PRICES + "grid_fee = 1500\n"
    + MEMBERS,
    "static_keys": HEAD + '\n[sharing]\nmode = "static_keys"\nunused = "community"\n'
    + PRICES + "grid_fee = 1500\n" + MEMBERS,
    "market": HEAD + '\n[sharing]\nmode = "market"\nmechanism = "pay_as_clear"\n' + PRICES
    + 'grid_fee_kind = "percent_bp"\ngrid_fee = 1000\n' + MEMBERS,
}
INTERVALS = {
    "type": "meterchain-intervals", "version": 1, "interval_ms": Q,
    "sources": [{"gateway": hashlib.sha256(b"gateway/1").hexdigest(), "first_height": 10,
                 "last_height": 13, "head_hash": hashlib.sha256(b"head/1").hexdigest()}],
    "points": {
        "AT001-anna": [[T0 + 40 * Q, 400, "M"], [T0 + 41 * Q, 300, "M"],
                       [T0 + 42 * Q, 333, "E"], [T0 + 43 * Q, 0, "M"]],
        "AT001-bert-c": [[T0 + 40 * Q, 100, "M"], [T0 + 41 * Q, 500, "M"],
                         [T0 + 42 * Q, 667, "M"], [T0 + 43 * Q, 50, "S"]],
        "AT001-bert-g": [[T0 + 40 * Q, 250, "M"], [T0 + 41 * Q, 0, "M"],
                         [T0 + 42 * Q, 120, "M"], [T0 + 43 * Q, 10, "M"]],
        "AT001-plant": [[T0 + 40 * Q, 600, "M"], [T0 + 41 * Q, 400, "M"],
                        [T0 + 42 * Q, 500, "M"], [T0 + 43 * Q, 7, "M"]],
    },
}
PERIOD = "2026-11-02"


def outcome(fn: Callable[[], object]) -> tuple[str | None, str | None]:
    try:
        fn()
    except DocumentError as exc:
        return type(exc).__name__, str(exc)
    return None, None


def corrupt_documents(signed: dict[str, Any], key: nacl.signing.SigningKey
                      ) -> list[dict[str, Any]]:
    cases: list[tuple[str, Callable[[dict[str, Any]], None], bool]] = [
        ("signature-bit-flipped", lambda d: d.update(
            signature=("%0128x" % (int(d["signature"], 16) ^ 1))), False),
        ("total-changed", lambda d: d["document"]["totals"].update(
            covered=d["document"]["totals"]["covered"] + 1), False),
        ("member-root-changed-resigned", lambda d: d["document"]["members"][0].update(
            root="00" * 32), True),
        ("members-out-of-order-resigned", lambda d: d["document"]["members"].reverse(), True),
        ("unknown-version", lambda d: d["document"].update(version=2), False),
        ("operator-key-swapped", lambda d: d["document"].update(operator_key="11" * 32),
         False),
        ("signature-missing", lambda d: d.pop("signature"), False),
    ]
    out = []
    for name, mutate, resign in cases:
        bad = copy.deepcopy(signed)
        mutate(bad)
        if resign:
            bad = sign(bad["document"], key)
        err, msg = outcome(lambda b=bad: verify_document(b))
        if err is None:
            raise SystemExit(f"corruption {name} unexpectedly verifies")
        out.append({"name": name, "signed": bad, "want_error": err, "message": msg})
    return out


def corrupt_proofs(proof: dict[str, Any]) -> list[dict[str, Any]]:
    cases: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
        ("line-changed", lambda p: p["lines"].__setitem__(
            40, p["lines"][40].replace(",400,", ",401,", 1))),
        ("line-dropped", lambda p: p["lines"].pop(0)),
        ("other-member-claimed", lambda p: p.update(member="plant")),
        ("audit-path-truncated", lambda p: p.update(audit_path=p["audit_path"][:-1])),
        ("member-index-moved", lambda p: p.update(member_index=p["member_index"] + 1)),
    ]
    out = []
    for name, mutate in cases:
        bad = copy.deepcopy(proof)
        mutate(bad)
        err, msg = outcome(lambda b=bad: verify_proof(b))
        if err is None:
            raise SystemExit(f"proof corruption {name} unexpectedly verifies")
        out.append({"name": name, "proof": bad, "want_error": err, "message": msg})
    return out


def vector(mode: str, toml_text: str, key: nacl.signing.SigningKey, corruptions: bool
           ) -> dict[str, Any]:
    raw = toml_text.encode()
    community = parse_community(tomllib.loads(toml_text), sha256=hashlib.sha256(raw).hexdigest())
    data = parse_intervals(INTERVALS)
    result = run(community, parse_period(PERIOD, community.time_zone), data)
    body = make_body(result, data.sources, bytes(key.verify_key))
    signed = sign(body, key)
    doc = verify_document(signed)
    proof = make_proof(signed, doc, "anna", result.lines["anna"])
    members = []
    for m in result.members:
        root = member_root(result.lines[m])
        members.append({"id": m, "root": root.hex(), "leaf": member_leaf(m, root).hex(),
                        "lines": [{"line": ln, "hash": line_hash(ln).hex()}
                                  for ln in result.lines[m]]})
    out = {
        "name": mode, "community_toml": toml_text, "period": PERIOD,
        "members": members, "body_canonical": canonical(body).decode(),
        "document_hash": document_hash(body).hex(), "signed": signed, "proof_anna": proof,
    }
    if corruptions:
        out["proof_anna_partial"] = make_proof(signed, doc, "anna", result.lines["anna"],
                                               select=[40, 41])
        out["corrupt_documents"] = corrupt_documents(signed, key)
        out["corrupt_proofs"] = corrupt_proofs(proof)
    return out


def generate() -> dict[str, Any]:
    key = nacl.signing.SigningKey(OPERATOR_SEED)
    return {"format": "meterchain-settlement test vectors", "version": 1,
            "operator_seed": OPERATOR_SEED.hex(),
            "operator_key": bytes(key.verify_key).hex(),
            "intervals": INTERVALS,
            "vectors": [vector(m, t, key, i == 0)
                        for i, (m, t) in enumerate(COMMUNITIES.items())]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(generate(), indent=1, sort_keys=True, ensure_ascii=True) + "\n"
    (out / "settlement.json").write_text(text, encoding="ascii")


if __name__ == "__main__":
    main()
