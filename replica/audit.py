"""Comparing copies of gateway ledgers across replicas: the pure part of ``meterchain audit``.

Nothing here opens a socket or a file. :mod:`replica.auditor` fetches heads, served
hashes and block records from each replica and hands them to these functions, which
decide what differs:

- ``missing-gateway``: a replica does not know a gateway another replica holds;
- ``lagging``: a replica's chain is a strict prefix of the reference copy;
- ``missing-blocks``: a replica claims a head but does not serve every block up to it;
- ``fork``: two replicas hold different, validly signed blocks at one height (or a
  replica recorded fork evidence);
- ``tampered``: a replica serves a block whose bytes do not verify, a head or block
  hash that differs from its block's bytes, or fork evidence that does not verify.

The first divergent height between two copies is found by binary search over block
hashes (:func:`first_divergence`): the chain links every block to the one before, so two
valid chains that agree at height ``h`` agree at every height below ``h``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger import Block, ChainVerifier, Header, verify_fork
from ledger.errors import ChainError, HeightError
from replica.client import Head

KINDS = ("missing-gateway", "lagging", "missing-blocks", "fork", "tampered")
"""Every kind of finding, in the order reports list them."""

LAG_KINDS = frozenset({"missing-gateway", "lagging"})
"""Findings that are replication lag between consistent copies, not discrepancies: the
copy holds a prefix (perhaps empty) of the reference chain and may simply catch up."""

_KIND_WORDS = {
    "missing-gateway": "does not hold gateway",
    "lagging": "lags behind on gateway",
    "missing-blocks": "is missing blocks below its head for gateway",
    "fork": "holds a fork of gateway",
    "tampered": "serves a tampered block of gateway",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One discrepancy. ``replica`` is the copy at fault (or one side of a fork),
    ``other`` the copy it was compared with, ``height`` the first divergent height."""

    kind: str
    gateway: bytes
    replica: str
    height: int | None
    detail: str
    other: str | None = None
    behind: int | None = None
    """For lag: how many blocks the copy would need to catch up with ``other``."""

    @property
    def is_lag(self) -> bool:
        return self.kind in LAG_KINDS

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "discrepancy": not self.is_lag,
            "gateway": self.gateway.hex(),
            "replica": self.replica,
            "other": self.other,
            "height": self.height,
            "behind": self.behind,
            "detail": self.detail,
        }

    def line(self) -> str:
        """One sentence naming the replica, the kind, the gateway and the height."""
        at = f" at height {self.height}" if self.height is not None else ""
        label = "lag" if self.is_lag else "DISCREPANCY"
        return (f"{label}: replica {self.replica} {_KIND_WORDS[self.kind]} "
                f"{self.gateway.hex()[:16]}...{at}: {self.detail}")


@dataclass(slots=True)
class Report:
    """Everything an audit found. ``ok`` when every copy agrees."""

    replicas: list[str]
    gateways: int = 0
    blocks_checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def discrepancies(self) -> list[Finding]:
        """Forks, tampered blocks, blocks missing below a head: what exits 1."""
        return [f for f in self.findings if not f.is_lag]

    @property
    def lags(self) -> list[Finding]:
        """Copies behind the reference but consistent with it."""
        return [f for f in self.findings if f.is_lag]

    @property
    def max_lag_blocks(self) -> int:
        return max((f.behind or 0 for f in self.lags), default=0)

    @property
    def ok(self) -> bool:
        """No discrepancy (copies may lag)."""
        return not self.discrepancies

    def sorted_findings(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: (f.gateway, KINDS.index(f.kind),
                                                    f.replica, f.height or 0))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "replicas": self.replicas,
            "gateways": self.gateways,
            "blocks_checked": self.blocks_checked,
            "discrepancies": len(self.discrepancies),
            "max_lag_blocks": self.max_lag_blocks,
            "findings": [f.to_json() for f in self.sorted_findings()],
        }


# --- binary search ---------------------------------------------------------------------


def first_divergence(upto: int, equal_at: Callable[[int], bool]) -> int | None:
    """The lowest height in ``0..upto`` where two copies differ, or None if none does.

    ``equal_at(h)`` says whether both copies hold the same block hash at ``h``. For hash
    chains it is monotone (equal at ``h`` implies equal below ``h``), so at most
    ``ceil(log2(upto + 1)) + 1`` probes are made.
    """
    if upto < 0 or equal_at(upto):
        return None
    lo, hi = 0, upto  # invariant: the copies differ at hi; first difference is in lo..hi
    while lo < hi:
        mid = (lo + hi) // 2
        if equal_at(mid):
            lo = mid + 1
        else:
            hi = mid
    return lo


# --- one copy's chain ------------------------------------------------------------------


@dataclass(slots=True)
class ChainCheck:
    """Result of verifying the block records one replica served for one gateway.

    ``hashes[h]`` is the hash of the header served at height ``h`` (None when the record
    did not decode). ``error`` is the first verification failure (its ``height`` set),
    ``gap_at`` the first height the replica did not serve in order.
    """

    hashes: list[bytes | None] = field(default_factory=list)
    error: ChainError | None = None
    gap_at: int | None = None

    @property
    def count(self) -> int:
        return len(self.hashes)

    @property
    def bad_height(self) -> int | None:
        return None if self.error is None else self.error.height


class ChainChecker:
    """Verifies one copy's block records from genesis, in order, with the ledger core.

    Keeps going past the first invalid block (recording each later block's hash, so
    copies can still be compared) but keeps only the first error.
    """

    def __init__(self, gateway_key: bytes) -> None:
        self._verifier = ChainVerifier(gateway_key=gateway_key)
        self.result = ChainCheck()

    def feed(self, record: bytes) -> None:
        """Check the next record (expected at height ``result.count``). Never raises."""
        res = self.result
        expected = res.count
        if res.gap_at is not None:
            return
        try:
            block = Block.decode(record)
        except ChainError as exc:
            res.hashes.append(None)
            if res.error is None:
                res.error = exc.at_height(expected)
            return
        if block.height != expected:
            res.gap_at = expected
            if res.error is None and block.height < expected:
                res.error = HeightError("replica served a block out of order",
                                        expected=expected, actual=block.height, height=expected)
            return
        res.hashes.append(block.hash)
        if res.error is not None:
            return
        try:
            self._verifier.add(block)
        except ChainError as exc:
            res.error = exc.at_height(expected)


def check_records(gateway_key: bytes, records: Iterable[bytes]) -> ChainCheck:
    """Verify a whole served chain at once (see :class:`ChainChecker`)."""
    checker = ChainChecker(gateway_key)
    for rec in records:
        checker.feed(rec)
    return checker.result


# --- comparing copies ------------------------------------------------------------------


def pick_reference(heads: Mapping[str, Head | None],
                   checks: Mapping[str, ChainCheck] | None = None) -> str | None:
    """The copy others are compared with: the longest valid one, first listed on a tie."""
    best: tuple[int, int] | None = None
    ref = None
    for r, head in heads.items():
        if head is None:
            continue
        c = checks.get(r) if checks else None
        valid = head.height
        if c is not None:
            bad = [h for h in (c.bad_height, c.gap_at) if h is not None]
            valid = min([head.height + 1, c.count, *bad]) - 1
        score = (valid, head.height)
        if best is None or score > best:
            best, ref = score, r
    return ref


def _first_hash_difference(a: Sequence[bytes | None], b: Sequence[bytes | None]) -> int | None:
    upto = min(len(a), len(b)) - 1
    return first_divergence(upto, lambda h: a[h] is not None and a[h] == b[h])


def assess_copy(gateway: bytes, replica: str, head: Head, check: ChainCheck,
                served: Mapping[int, bytes | None] | None = None) -> list[Finding]:
    """Findings about one copy on its own: invalid blocks, missing blocks, a head or
    served block hash (``served``: height to the hash the replica's hash endpoint gave)
    that differs from the hash of the block bytes it serves."""
    out = []
    for h in sorted(served or {}):
        said = (served or {})[h]
        actual = check.hashes[h] if h < check.count else None
        if check.bad_height is not None and check.bad_height <= h:
            break  # the invalid block itself is reported below
        if said is not None and actual is not None and said != actual:
            out.append(Finding("tampered", gateway, replica, h,
                               f"hash served for this height ({_hx(said)}) differs from "
                               f"its block's hash ({_hx(actual)})"))
            break
    if check.error is not None:
        out.append(Finding("tampered", gateway, replica, check.bad_height,
                           f"block does not verify: {check.error.reason}: {check.error.message}"))
    want = head.height + 1
    have = check.gap_at if check.gap_at is not None else check.count
    if have < want:
        out.append(Finding("missing-blocks", gateway, replica, have,
                           f"head is at height {head.height} but blocks {have}.."
                           f"{head.height} are not served"))
    elif head.height >= 0 and check.error is None and check.hashes[head.height] != head.hash:
        got = check.hashes[head.height]
        out.append(Finding("tampered", gateway, replica, head.height,
                           f"head hash {_hx(head.hash)} differs from its block's hash {_hx(got)}"))
    return out


def _hx(value: bytes | None) -> str:
    return "none" if value is None else value.hex()[:16] + "..."


def assess_gateway(
    gateway: bytes,
    heads: Mapping[str, Head | None],
    checks: Mapping[str, ChainCheck],
    served: Mapping[str, Mapping[int, bytes | None]] | None = None,
    reference: str | None = None,
) -> list[Finding]:
    """Every finding about one gateway across all copies.

    ``heads`` maps each replica to its head (None: the replica does not know the
    gateway). ``checks`` holds each holder's verified chain; ``served`` the hashes each
    replica's hash endpoint gave while binary-searching it against ``reference``
    (default: :func:`pick_reference`). Copies are compared by the hashes of the bytes
    they serve; the first divergent height is found by binary search over them.
    """
    out: list[Finding] = []
    holders = [r for r, h in heads.items() if h is not None]
    if not holders:
        return out
    ref = reference or pick_reference(heads, checks)
    assert ref is not None
    for r, head in heads.items():
        if head is None:
            ref_height = heads[ref].height  # type: ignore[union-attr]
            out.append(Finding("missing-gateway", gateway, r, None,
                               f"{ref} holds it up to height {ref_height}", other=ref,
                               behind=ref_height + 1))
            continue
        out.extend(assess_copy(gateway, r, head, checks[r], (served or {}).get(r)))
    ref_head, ref_check = heads[ref], checks[ref]
    assert ref_head is not None
    for r in holders:
        if r == ref:
            continue
        head, check = heads[r], checks[r]
        assert head is not None
        d_bytes = _first_hash_difference(check.hashes, ref_check.hashes)
        if d_bytes is not None:
            bad_here = [c for c in (check, ref_check)
                        if c.bad_height is not None and c.bad_height <= d_bytes]
            if not bad_here:
                out.append(Finding("fork", gateway, r, d_bytes,
                                   f"holds a different validly signed block than {ref} "
                                   f"({_hx(check.hashes[d_bytes])} vs "
                                   f"{_hx(ref_check.hashes[d_bytes])})", other=ref))
            continue
        if head.height < ref_head.height:
            out.append(Finding("lagging", gateway, r, head.height + 1,
                               f"at height {head.height}, {ref_head.height - head.height} "
                               f"block(s) behind {ref} (height {ref_head.height})", other=ref,
                               behind=ref_head.height - head.height))
    return out


def assess_forks(replica: str, evidence: Iterable[tuple[bytes, int, bytes, bytes, bytes, bytes]]
                 ) -> list[Finding]:
    """Findings from the fork evidence a replica recorded.

    Each item is ``(key, height, header_a, sig_a, header_b, sig_b)``. Evidence that
    verifies offline is a ``fork``; evidence that does not is ``tampered``.
    """
    out = []
    for key, height, ha, sa, hb, sb in evidence:
        try:
            got = verify_fork(Header.decode(ha), sa, Header.decode(hb), sb)
        except ChainError as exc:
            out.append(Finding("tampered", key, replica, height,
                               f"recorded fork evidence does not verify: {exc}"))
            continue
        if got != height:
            out.append(Finding("tampered", key, replica, height,
                               f"fork evidence headers are at height {got}, listed at {height}"))
        else:
            out.append(Finding("fork", key, replica, height,
                               "replica recorded fork evidence: two valid signed headers "
                               "by this key at this height"))
    return out


__all__ = [
    "KINDS",
    "ChainCheck",
    "ChainChecker",
    "Finding",
    "Report",
    "assess_copy",
    "assess_forks",
    "assess_gateway",
    "check_records",
    "first_divergence",
    "pick_reference",
]
