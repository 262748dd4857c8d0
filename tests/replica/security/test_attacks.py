"""Attacks that the replica already withstands, kept here so that they stay withstood.

Each pushes something an attacker could send and checks the refusal and that nothing
was stored; the path tricks check that no spelling of a path slips past the access
table. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import httpx
import nacl.signing
import pytest

from ledger import Block, header_hash
from tests.replica.conftest import RunningReplica, enroll
from tests.support.chains import encode_b64, gateway_key, make_chain, signing_seed

SEED = b"victim-gw"
ATTACKER = b"attacker-gw"
L = 2**252 + 27742317777372353535851937790883648493  # Ed25519 group order


@pytest.fixture
def victim(make_replica: Callable[..., RunningReplica]
           ) -> tuple[RunningReplica, bytes, list[Block]]:
    rep = make_replica(public=frozenset())
    key = enroll(rep.storage, SEED)
    enroll(rep.storage, ATTACKER, name="attacker")
    chain = make_chain(SEED, 6, 3)
    assert rep.push(key, chain[:3]).status_code == 200
    return rep, key, chain


def resign(header: object, payload: bytes, seed: bytes) -> Block:
    sk = nacl.signing.SigningKey(signing_seed(seed))
    return Block(header, sk.sign(header_hash(header.encode())).signature,  # type: ignore
                 payload)


def attacks(key: bytes, chain: list[Block]) -> dict[str, tuple[list[Block] | bytes, int, str]]:
    nxt = chain[3]
    sig = nxt.signature
    s = int.from_bytes(sig[32:], "little")
    malleated = Block(nxt.header, sig[:32] + (s + L).to_bytes(32, "little"), nxt.payload)
    other = make_chain(ATTACKER, 4, 3)
    substituted = resign(nxt.header, nxt.payload, ATTACKER)  # victim's key in the header
    forged_hdr = dataclasses.replace(nxt.header, reading_count=nxt.header.reading_count + 1)
    far = dataclasses.replace(nxt.header, height=2**63 - 1)
    regenesis = make_chain(SEED, 1, 3, meter_id="rewritten")[0]
    deep = b'{"blocks": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    return {
        "forged-signature": ([Block(nxt.header, bytes(64), nxt.payload)], 422, "bad-signature"),
        "flipped-signature-bit": ([Block(nxt.header, bytes([sig[0] ^ 1]) + sig[1:],
                                         nxt.payload)], 422, "bad-signature"),
        "malleated-signature": ([malleated], 422, "bad-signature"),
        "key-substitution": ([substituted], 422, "bad-signature"),
        "cross-gateway-replay": (other[:1], 422, "gateway-mismatch"),
        "header-changed-after-signing": ([Block(forged_hdr, sig, nxt.payload)], 422,
                                         "bad-signature"),
        "gap": (chain[4:6], 409, "gap"),
        "absurd-height": ([resign(far, nxt.payload, SEED)], 409, "gap"),
        "payload-swapped": ([Block(nxt.header, sig, chain[4].payload)], 422,
                            "payload-hash-mismatch"),
        "re-genesis-other-key": ([resign(regenesis.header, regenesis.payload, ATTACKER)], 422,
                                 "bad-signature"),
        "not-json": (b"{not json", 400, "malformed"),
        "deeply-nested": (deep, 400, "malformed"),
        "not-a-list": (b'{"blocks": "x"}', 400, "malformed"),
        "not-base64": (b'{"blocks": ["@@@"]}', 400, "malformed"),
        "truncated-record": (json.dumps({"blocks": [encode_b64([nxt])[0][:40]]}).encode(),
                             400, "malformed"),
    }


NAMES = list(attacks(gateway_key(SEED), make_chain(SEED, 6, 3)))


@pytest.mark.parametrize("name", NAMES)
def test_bad_push_is_refused_and_stores_nothing(
        victim: tuple[RunningReplica, bytes, list[Block]], name: str) -> None:
    rep, key, chain = victim
    payload, status, code = attacks(key, chain)[name]
    before = rep.snapshot()
    r = rep.push(key, payload) if isinstance(payload, list) else rep.push_raw(key, payload)
    assert (r.status_code, r.json()["error"]) == (status, code), r.text[:300]
    assert rep.snapshot() == before
    assert rep.push(key, chain[3:]).status_code == 200  # the gateway is unharmed


def test_re_genesis_by_the_gateway_key_is_fork_evidence_never_an_overwrite(
        victim: tuple[RunningReplica, bytes, list[Block]]) -> None:
    rep, key, chain = victim
    regenesis = make_chain(SEED, 2, 3, meter_id="rewritten")
    r = rep.push(key, regenesis)
    assert (r.status_code, r.json()["error"]) == (409, "fork")
    assert rep.head(key) == {"height": 2, "hash": chain[2].hash.hex()}
    assert rep.http.get("/v1/forks").json()["total"] == 1


def test_oversized_body_is_refused(make_replica: Callable[..., RunningReplica]) -> None:
    from replica.config import Limits

    rep = make_replica(Limits(max_body_bytes=10_000))
    key = enroll(rep.storage, SEED)
    r = rep.push_raw(key, b'{"blocks": ["' + b"A" * 20_000 + b'"]}')
    assert (r.status_code, r.json()["error"]) == (413, "too-large")


@pytest.mark.parametrize("path", [
    "/v1/gateways/{k}/../../forks", "/v1/gateways/%2e%2e/forks", "/v1//gateways",
    "/V1/gateways", "/v1/gateways/", "/v1/gateways/{K}/blocks", "/v1/gateways/{k}/blocks/",
    "/v1/gateways/{k}%2Fblocks", "/v1/gateways/{k}/readings.csv/", "/v1/forks/",
    "/v1/gateways/{k}/blocks/0/hash/../../blocks", "//v1/forks", "/v1/./forks",
    "/v1/gateways/{k}/proof;x=1?height=0&index=0", "/openapi.json/", "/docs", "/redoc",
])
def test_no_spelling_of_a_path_reads_without_a_token(
        victim: tuple[RunningReplica, bytes, list[Block]], path: str) -> None:
    rep, key, chain = victim
    url = path.replace("{k}", key.hex()).replace("{K}", key.hex().upper())
    with httpx.Client(base_url=rep.url) as raw:  # sends the path as written
        r = raw.get(url)
    assert r.status_code in (400, 401, 403, 404, 405), (url, r.status_code)
    assert "meter-1" not in r.text and "blocks\": [\"" not in r.text
    assert r.status_code != 500
