"""Signed documents, member proofs, recomputation and revisions."""

from __future__ import annotations

import copy
from typing import Any

import nacl.signing
import pytest

from ledger.merkle import inclusion_proof, merkle_root
from settlement.build import make_body
from settlement.diff import member_diffs
from settlement.document import (
    canonical,
    document_hash,
    line_hash,
    member_leaf,
    member_root,
    sign,
    verify_document,
)
from settlement.engine import Result, run
from settlement.errors import DocumentError, SettlementMismatch
from settlement.proof import make_proof, verify_proof
from settlement.source import IntervalData
from settlement.verify import compare

from .conftest import small


def _settle(operator: nacl.signing.SigningKey, **kw: Any) -> tuple[Result, dict[str, Any]]:
    c, period, data = small(**kw)
    r = run(c, period, data)
    return r, sign(make_body(r, data.sources, bytes(operator.verify_key)), operator)


def test_signed_document_verifies_and_commits_to_every_line(operator: Any) -> None:
    r, signed = _settle(operator)
    doc = verify_document(signed, bytes(operator.verify_key))
    assert doc.hash == document_hash(signed["document"])
    for m in r.members:
        assert doc.member_roots[m] == merkle_root([line_hash(ln) for ln in r.lines[m]])
    assert signed["document"]["totals"]["lines"] == sum(len(v) for v in r.lines.values())


def test_canonical_encoding_refuses_floats_and_sorts_keys() -> None:
    assert canonical({"b": 1, "a": [None, "x"]}) == b'{"a":[null,"x"],"b":1}'
    with pytest.raises(DocumentError, match="floats"):
        canonical({"a": 1.5})


@pytest.mark.parametrize("mutate, error", [
    (lambda d: d.update(signature="00" * 64), "signature"),
    (lambda d: d["document"]["totals"].update(covered=1), "signature"),
    (lambda d: d["document"].update(version=2), "version"),
    (lambda d: d["document"].update(type="x"), "type"),
    (lambda d: d.pop("signature"), "not a settlement document"),
])
def test_tampered_documents_are_refused(operator: Any, mutate: Any, error: str) -> None:
    _, signed = _settle(operator)
    bad = copy.deepcopy(signed)
    mutate(bad)
    with pytest.raises(DocumentError, match=error):
        verify_document(bad)


def test_a_member_root_that_does_not_give_the_root_is_named(operator: Any) -> None:
    _, signed = _settle(operator)
    body = copy.deepcopy(signed["document"])
    body["members"][1]["root"] = "00" * 32
    with pytest.raises(SettlementMismatch, match="root"):
        verify_document(sign(body, operator))


def test_wrong_operator_is_refused(operator: Any) -> None:
    _, signed = _settle(operator)
    with pytest.raises(DocumentError, match="expected operator"):
        verify_document(signed, bytes(32))


def test_member_proof_verifies_offline_and_reveals_only_that_member(operator: Any) -> None:
    r, signed = _settle(operator)
    doc = verify_document(signed)
    proof = make_proof(signed, doc, "m0002", r.lines["m0002"])
    got_doc, lines, readings = verify_proof(proof, bytes(operator.verify_key))
    assert readings == []
    assert lines == r.lines["m0002"] and got_doc.hash == doc.hash
    text = canonical(proof).decode()
    for other in r.members:
        if other != "m0002":
            assert not any(ln in text for ln in r.lines[other] if ln.startswith("I,"))


@pytest.mark.parametrize("mutate, error", [
    (lambda p: p["lines"].__setitem__(3, p["lines"][3].replace(",M,", ",E,", 1)), "root"),
    (lambda p: p["lines"].pop(), "root"),
    (lambda p: p.update(member="m0001"), "not m0001's"),
    (lambda p: p.update(audit_path=p["audit_path"][:-1]), "audit path"),
    (lambda p: p.update(member_index=0), "audit path|via audit path"),
])
def test_tampered_proofs_fail(operator: Any, mutate: Any, error: str) -> None:
    r, signed = _settle(operator)
    proof = make_proof(signed, verify_document(signed), "m0002", r.lines["m0002"])
    mutate(proof)
    with pytest.raises(DocumentError, match=error):
        verify_proof(proof)


def test_audit_path_is_the_ledger_cores_rfc6962_path(operator: Any) -> None:
    r, signed = _settle(operator, members=7)
    doc = verify_document(signed)
    leaves = [member_leaf(m, member_root(r.lines[m])) for m in r.members]
    for i, m in enumerate(r.members):
        proof = make_proof(signed, doc, m, r.lines[m])
        assert proof["audit_path"] == [h.hex() for h in inclusion_proof(leaves, i)]
        verify_proof(proof)


def test_recomputation_names_the_first_differing_line(operator: Any) -> None:
    r, signed = _settle(operator)
    doc = verify_document(signed)
    c, period, data = small()
    compare(doc, run(c, period, data), list(data.sources), r.lines)
    points = {p: dict(v) for p, v in data.points.items()}
    t = sorted(points["m0004-c"])[50]
    points["m0004-c"][t] = (points["m0004-c"][t][0] + 7, 0)
    changed = run(c, period, IntervalData(data.interval_ms, points, data.sources))
    with pytest.raises(SettlementMismatch) as info:
        compare(doc, changed, list(data.sources), r.lines)
    e = info.value
    assert e.what.startswith("member m0") and e.line is not None and e.actual_line is not None
    assert e.line.split(",")[2] == str(t) and e.line != e.actual_line


def test_recomputation_checks_the_sources(operator: Any) -> None:
    r, signed = _settle(operator)
    c, period, data = small()
    with pytest.raises(SettlementMismatch, match="sources"):
        compare(verify_document(signed), r, [], None)


def test_revisions_chain_and_show_differences(operator: Any) -> None:
    r0, s0 = _settle(operator, estimated_every=30)
    d0 = verify_document(s0)
    c, period, data = small()  # the estimated intervals are now measured
    r1 = run(c, period, data)
    body = make_body(r1, data.sources, bytes(operator.verify_key), d0)
    assert body["revision"] == 1 and body["previous"] == d0.hash.hex()
    d1 = verify_document(sign(body, operator))
    assert d1.body["root"] != d0.body["root"]
    diffs = member_diffs(r0.totals, r1.totals)
    assert diffs and all(d["provisional_intervals"] < 0 for d in diffs.values())
    other = copy.deepcopy(s0)
    other["document"]["period"]["label"] = "2026-06-22"
    with pytest.raises(DocumentError, match="previous document"):
        make_body(r1, data.sources, bytes(operator.verify_key),
                  verify_document(sign(other["document"], operator)))


def test_partial_proof_shows_chosen_lines_each_with_its_path(operator: Any) -> None:
    r, signed = _settle(operator)
    doc = verify_document(signed)
    lines = r.lines["m0002"]
    proof = make_proof(signed, doc, "m0002", lines, select=[50, 10, 50, 11])
    assert proof["lines"] == [lines[10], lines[11], lines[50]]
    assert proof["line_count"] == len(lines)
    _, got, _ = verify_proof(proof)
    assert got == [lines[10], lines[11], lines[50]]
    for mutate, error in (
            (lambda p: p["lines"].__setitem__(0, lines[12]), "via its audit path"),
            (lambda p: p["line_indexes"].__setitem__(0, 12), "via its audit path"),
            (lambda p: p.update(line_count=len(lines) + 1), "line_count"),
            (lambda p: p["line_paths"].pop(), "an index and audit path per line"),
            (lambda p: p["line_paths"][1].pop(), "audit path")):
        bad = copy.deepcopy(proof)
        mutate(bad)
        with pytest.raises(DocumentError, match=error):
            verify_proof(bad)
    with pytest.raises(DocumentError, match="select lines"):
        make_proof(signed, doc, "m0002", lines, select=[len(lines)])
