"""``meterchain audit``: fetch every copy over HTTP and compare them with :mod:`replica.audit`.

For each gateway any replica lists:

1. each replica's head comes from ``GET /v1/gateways`` (a replica that does not list
   the gateway is a ``missing-gateway``);
2. every block up to each head is fetched in pages and verified from genesis with the
   ledger core (:class:`replica.audit.ChainChecker`), so a block whose bytes were
   altered in a replica's database is found even when its header hash is unchanged;
3. each copy's served block hashes (``.../blocks/{h}/hash``) are binary-searched
   against the reference copy for the first divergent height; the verified bytes
   confirm what that divergence is (a fork, a tampered block, or a served hash that
   differs from its block's bytes). A hash index altered alone, away from the heights
   the search probes, does not change any block the replica serves and goes unseen;
4. the fork evidence each replica recorded is verified offline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ledger.errors import ForwardingError, ReplicaRefused
from replica.audit import (
    ChainCheck,
    ChainChecker,
    Finding,
    Report,
    assess_forks,
    assess_gateway,
    first_divergence,
    pick_reference,
)
from replica.client import GatewayInfo, Head, ReplicaClient

Progress = Callable[[int, int, str], None]
"""``progress(done, total, label)``: called as copies are checked."""


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """Limits of one audit run.

    ``max_hash_probes``: most ``.../hash`` requests per copy and gateway (a binary
    search needs about log2 of the chain's length; this bounds a misbehaving replica).
    """

    max_hash_probes: int = 128


def _listing(client: ReplicaClient) -> dict[bytes, GatewayInfo]:
    return {g.key: g for g in client.gateways()}


class _HashProbe:
    """Served hashes of one gateway on one replica, fetched on demand and cached."""

    def __init__(self, client: ReplicaClient, key: bytes, limit: int) -> None:
        self.client, self.key, self.limit = client, key, limit
        self.cache: dict[int, bytes | None] = {}
        self.requests = 0

    def at(self, height: int) -> bytes | None:
        if height not in self.cache:
            if self.requests >= self.limit:
                raise ForwardingError(f"more than {self.limit} hash requests for gateway "
                                      f"{self.key.hex()}", replica=self.client.url)
            self.requests += 1
            try:
                self.cache[height] = self.client.block_hash(self.key, height)
            except ReplicaRefused as exc:
                if exc.status != 404:
                    raise
                self.cache[height] = None
        return self.cache[height]


def _check_copy(client: ReplicaClient, key: bytes, head: Head, start: int = 0) -> ChainCheck:
    checker = ChainChecker(key)
    if head.height >= 0:
        for page in client.iter_blocks(key, start, head.height):
            for rec in page:
                checker.feed(rec)
    return checker.result


def audit_gateway(key: bytes, clients: Sequence[ReplicaClient],
                  listings: Sequence[dict[bytes, GatewayInfo]],
                  config: AuditConfig) -> tuple[list[Finding], int]:
    """Findings about one gateway across ``clients`` and the number of blocks fetched.

    Raises:
        ForwardingError: a replica failed mid-way.
    """
    heads: dict[str, Head | None] = {}
    for c, listing in zip(clients, listings, strict=True):
        info = listing.get(key)
        heads[c.url] = info.head if info is not None else None
    by_url = {c.url: c for c in clients}
    checks: dict[str, ChainCheck] = {}
    fetched = 0
    for url, head in heads.items():
        if head is None:
            continue
        checks[url] = _check_copy(by_url[url], key, head)
        fetched += checks[url].count
    ref = pick_reference(heads, checks)
    assert ref is not None
    ref_probe = _HashProbe(by_url[ref], key, config.max_hash_probes)
    probes = {ref: ref_probe}
    for url, head in heads.items():
        if head is None or url == ref:
            continue
        probe = probes[url] = _HashProbe(by_url[url], key, config.max_hash_probes)
        ref_head = heads[ref]
        assert ref_head is not None
        upto = min(head.height, ref_head.height)

        def same(h: int, p: _HashProbe = probe) -> bool:
            return p.at(h) is not None and p.at(h) == ref_probe.at(h)

        first_divergence(upto, same)  # the probes keep what each replica served
    served = {url: p.cache for url, p in probes.items()}
    return assess_gateway(key, heads, checks, served, ref), fetched


def run_audit(clients: Sequence[ReplicaClient], config: AuditConfig | None = None,
              progress: Progress | None = None) -> Report:
    """Compare every gateway's copies across ``clients``.

    Raises:
        ForwardingError: a replica cannot be reached or answers outside the protocol
            (an audit that cannot see a copy cannot vouch for it).
    """
    config = config or AuditConfig()
    report = Report(replicas=[c.url for c in clients])
    listings = [_listing(c) for c in clients]
    for c in clients:
        report.findings.extend(assess_forks(c.url, (
            (f.key, f.height, f.header_a, f.signature_a, f.header_b, f.signature_b)
            for f in c.forks())))
    keys = sorted(set().union(*listings)) if listings else []
    report.gateways = len(keys)
    for i, key in enumerate(keys):
        if progress:
            progress(i, len(keys), key.hex()[:16])
        findings, fetched = audit_gateway(key, clients, listings, config)
        report.findings.extend(findings)
        report.blocks_checked += fetched
    if progress:
        progress(len(keys), len(keys), "done")
    return report


__all__ = ["AuditConfig", "Progress", "audit_gateway", "run_audit"]
