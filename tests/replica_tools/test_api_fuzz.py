"""Fuzzing the replica API on a real server: schema-driven (schemathesis, from the
server's own /openapi.json) and random mutations of valid batches (hypothesis).

Every answer must be below 500; every refusal a 4xx with a JSON ``error`` and ``detail``;
and nothing a refused request sent may be stored (the replica's gateways, heads, fork
evidence and every stored record are compared before and after).
"""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.replica_tools.conftest import LiveReplica
from tests.support.chains import encode_b64, gateway_key, make_chain
from tests.support.tokens import auth_header

SEED, OTHER = b"fuzz-gw", b"fuzz-other"
KEY, OTHER_KEY = gateway_key(SEED), gateway_key(OTHER)
CHAIN = make_chain(SEED, 12, 3)
STORED = 6  # the replica holds CHAIN[:6]; CHAIN[6:] are valid next blocks


def check_answer(status: int, text: str) -> None:
    assert status < 500, f"server error {status}: {text[:300]}"
    if status >= 400:
        body = json.loads(text)
        assert isinstance(body.get("error"), str) and body["error"], text[:300]
        assert isinstance(body.get("detail"), str), text[:300]


@pytest.fixture
def fuzz_replica(replicas) -> LiveReplica:
    rep = replicas()
    rep.enroll(KEY, "fuzz")
    rep.enroll(OTHER_KEY, "other")
    rep.push_ok(KEY, CHAIN[:STORED])
    return rep


@pytest.mark.slow
def test_schema_driven_fuzzing_never_fails_the_server_or_stores_refused_input(
        fuzz_replica: LiveReplica) -> None:
    rep = fuzz_replica
    before = rep.snapshot()
    schema = schemathesis.openapi.from_url(f"{rep.url}/openapi.json", headers=auth_header())
    operations = [r.ok() for r in schema.get_all_operations()]
    assert any(op.method.upper() == "POST" for op in operations)
    seen: dict[str, set[int]] = {}

    for op in operations:
        has_input = bool(list(op.iter_parameters())) or op.method.upper() == "POST"
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (
            GenerationMode.POSITIVE,)  # nothing to make invalid
        for mode in modes:
            for path_params in (None, {"gw": KEY.hex()}):
                if path_params and "{gw}" not in op.path:
                    continue
                strategy = op.as_strategy(generation_mode=mode, path_parameters=path_params)

                @settings(max_examples=25, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def run(case: schemathesis.Case) -> None:
                    resp = case.call(base_url=rep.url, timeout=30, headers=auth_header())
                    seen.setdefault(case.operation.label, set()).add(resp.status_code)
                    check_answer(resp.status_code, resp.text)
                    if resp.status_code == 200 and case.method.upper() == "POST":
                        assert resp.json()["stored"] == 0, "fuzzed batch was stored"

                try:
                    run()
                except Unsatisfiable:
                    # only string path parameters: no input violates the schema
                    assert mode is GenerationMode.NEGATIVE, op.label
    assert rep.snapshot() == before
    assert len(seen) == len(operations)
    assert any(s >= 400 for codes in seen.values() for s in codes)


def mutate(data: st.DataObject, records: list[bytes]) -> list[str] | object:
    """One random corruption of a valid batch of block records (as pushed)."""
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend", "reorder", "drop",
                                      "duplicate-other", "b64", "replay"]), label="kind")
    recs = list(records)
    i = data.draw(st.integers(0, len(recs) - 1), label="index")
    if kind == "flip":
        pos = data.draw(st.integers(0, len(recs[i]) * 8 - 1), label="bit")
        r = bytearray(recs[i])
        r[pos // 8] ^= 1 << (pos % 8)
        recs[i] = bytes(r)
    elif kind == "truncate":
        recs[i] = recs[i][: data.draw(st.integers(0, len(recs[i]) - 1), label="cut")]
    elif kind == "extend":
        recs[i] = recs[i] + data.draw(st.binary(min_size=1, max_size=8), label="tail")
    elif kind == "reorder":
        if len(recs) < 2:
            recs.insert(0, recs[0])
        perm = data.draw(st.permutations(recs), label="perm")
        if list(perm) == recs:
            perm = list(reversed(recs)) if len(set(recs)) > 1 else [recs[0], recs[0]]
        recs = list(perm)
    elif kind == "drop":
        if len(recs) == 1:
            return [base64.b64encode(make_chain(SEED, 1, 3, prev=CHAIN[-1])[0].encode())
                    .decode()]  # a block far past the head: a gap
        del recs[0 if i == len(recs) - 1 else i]
        recs = recs if recs[0] != records[0] else recs[1:] or [records[-1]]
    elif kind == "duplicate-other":
        other = make_chain(SEED, 1, 3, prev=CHAIN[STORED - 2], meter_id="meter-q")[0]
        recs = [other.encode(), *recs]  # a different block at the stored head: a fork
    elif kind == "b64":
        return [base64.b64encode(r).decode() for r in recs[:i]] + ["@@not base64@@"]
    elif kind == "replay":
        recs = [b.encode() for b in make_chain(OTHER, len(recs), 3)]
    return [base64.b64encode(r).decode() for r in recs]


@pytest.mark.slow
def test_mutated_batches_are_always_refused_and_store_nothing(fuzz_replica: LiveReplica
                                                              ) -> None:
    rep = fuzz_replica
    before = rep.snapshot()
    client = httpx.Client(base_url=rep.url, timeout=30)
    url = f"/v1/gateways/{KEY.hex()}/blocks"
    statuses: set[int] = set()

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data(), n=st.integers(1, 6))
    def run(data: st.DataObject, n: int) -> None:
        batch = [b.encode() for b in CHAIN[STORED:STORED + n]]
        body = mutate(data, batch)
        resp = client.post(url, json={"blocks": body})
        statuses.add(resp.status_code)
        assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:300])
        check_answer(resp.status_code, resp.text)
        assert resp.json().get("head") == {"height": STORED - 1,
                                           "hash": CHAIN[STORED - 1].hash.hex()}

    run()
    client.close()
    # a fork attempt keeps fork evidence (by design); everything else must be unchanged
    gws, _forks, records = rep.snapshot()
    assert (gws, records) == (before[0], before[2])
    assert statuses >= {400, 409, 422}
    assert client_push_valid(rep) == len(CHAIN) - 1


def client_push_valid(rep: LiveReplica) -> int:
    """After all that, the valid continuation is still accepted: returns the new height.

    The fuzzing came from this address, so its budget of refused pushes may be spent:
    like a gateway, wait as ``Retry-After`` says (429) and push again."""
    for _ in range(30):
        resp = httpx.post(f"{rep.url}/v1/gateways/{KEY.hex()}/blocks",
                          json={"blocks": encode_b64(CHAIN[STORED:])}, timeout=30)
        if resp.status_code != 429:
            break
        time.sleep(float(resp.headers["retry-after"]))
    assert resp.status_code == 200, resp.text
    return int(resp.json()["head"]["height"])


@pytest.mark.parametrize("query", ["to_ms=1180591620717411303424", "from_ms=-1",
                                   "from_ms=1180591620717411303424"])
def test_out_of_range_export_times_are_refused_not_server_errors(fuzz_replica: LiveReplica,
                                                                 query: str) -> None:
    """Found by the schema-driven fuzzer: a time past 2**63-1 must be a 400, not a 500."""
    resp = httpx.get(f"{fuzz_replica.url}/v1/gateways/{KEY.hex()}/readings.csv?{query}",
                     headers=auth_header(),
                     timeout=30)
    assert resp.status_code == 400, resp.text[:300]
    check_answer(resp.status_code, resp.text)
