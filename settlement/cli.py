"""``meterchain settle``: run, verify, prove and check community settlements.

    meterchain settle run --community community.toml --period 2026-11 \\
        (--intervals intervals.json | --replica URL | --config replica.toml) \\
        --key operator.key --out DIR [--previous OLD.json]
    meterchain settle verify DIR/settlement.json --community community.toml \\
        (--intervals intervals.json | --replica URL | --config replica.toml) \\
        [--statements DIR/members]
    meterchain settle prove DIR/settlement.json --member anna [-o proof.json] \\
        [--community community.toml (--replica URL | --config replica.toml)]
    meterchain settle verify-proof proof.json [--operator-key HEX_OR_FILE]
    meterchain settle verify-chain REV0/settlement.json REV1/settlement.json ...

A run writes ``settlement.json`` (the signed document), ``members/<id>.json`` and
``.csv`` (statements), ``intervals.json`` (the input it settled, so the run can be
checked again offline) and, with ``--previous``, ``differences.json`` (per member,
new minus old). ``--replica URL`` reads interval energy from a replica's meter-data
API with the token in ``--token-file`` or ``$MC_REPLICA_TOKEN`` (scope
``read:readings``); ``--config replica.toml`` reads the same answers straight from that
replica's storage, where the command runs beside the replica (the opener is given by the
command dispatcher: this package never imports the replica). Verification failures print
``FAILED ...`` and exit 1; bad input is one line on stderr and exit 2 (the dispatcher's
rule).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import nacl.signing

from keyfiles import load_public_key, load_signing_key
from settlement.build import make_body, member_roots
from settlement.config import Community, load_community
from settlement.diff import member_diffs
from settlement.document import (
    canonical,
    document_hash,
    load_document,
    sign,
    verify_revisions,
)
from settlement.engine import run
from settlement.errors import DocumentError, InputError, SettlementMismatch
from settlement.period import Period, parse_period
from settlement.proof import make_proof, verify_proof
from settlement.replica_source import Getter, collect, http_getter, member_readings
from settlement.source import IntervalData, load_intervals
from settlement.statements import (
    read_statement,
    totals_from_lines,
    write_file,
    write_statements,
)
from settlement.verify import compare

EXIT_OK, EXIT_FAILURE = 0, 1
TOKEN_ENV = "MC_REPLICA_TOKEN"

Recorder = Callable[[str, str, str, bool, str], None]
"""Records a verification in a replica: ``(replica_toml, document_sha256, against, ok,
detail)`` (``meterchain.settle_publish``; this package never imports the replica)."""

StorageSource = Callable[[str], AbstractContextManager[Getter]]
"""Opens a replica's storage from its ``replica.toml`` and answers, as a :data:`Getter`,
the replica API's requests that :func:`~settlement.replica_source.collect` and
:func:`~settlement.replica_source.member_readings` make (``meterchain.settle_source``)."""


def _statements(doc_path: str, given: str | None, members: list[str]
                ) -> dict[str, list[str]] | None:
    d = Path(given) if given else Path(doc_path).resolve().parent / "members"
    if not d.is_dir():
        return None
    out = {}
    for m in members:
        p = d / f"{m}.json"
        if p.is_file():
            out[m] = read_statement(p)["lines"]
    return out


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        try:
            text = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise InputError(f"--token-file: cannot read {args.token_file}: "
                             f"{exc.strerror}") from None
        if not text:
            raise InputError(f"--token-file: {args.token_file} is empty")
        return text
    return os.environ.get(TOKEN_ENV) or None


def _input(args: argparse.Namespace, community: Community, period: Period) -> IntervalData:
    if args.replica:
        return collect(community, period, http_getter(args.replica, _token(args)))
    if getattr(args, "config", None):
        with args.storage_source(args.config) as get:
            return collect(community, period, get)
    return load_intervals(args.intervals)


def cmd_run(args: argparse.Namespace) -> int:
    community = load_community(args.community)
    period = parse_period(args.period, community.time_zone)
    data = _input(args, community, period)
    out = Path(args.out)
    if (out / "settlement.json").exists():
        raise InputError(f"{out / 'settlement.json'} exists: settlements are never overwritten;"
                         " write a new revision to a new --out with --previous")
    key = nacl.signing.SigningKey(load_signing_key(args.key))
    previous = load_document(args.previous) if args.previous else None
    result = run(community, period, data)
    roots = member_roots(result)
    body = make_body(result, data.sources, bytes(key.verify_key), previous, roots)
    signed = sign(body, key)
    out.mkdir(parents=True, exist_ok=True)
    doc_hash = document_hash(body).hex()
    write_statements(result, out, doc_hash, body["revision"])
    write_file(out / "intervals.json", json.dumps(data.as_json()).encode() + b"\n")
    write_file(out / "settlement.json", canonical(signed) + b"\n")
    t = body["totals"]
    print(f"settled {community.name} {period.label} revision {body['revision']}: "
          f"{t['members']} members, {t['lines']} lines, covered {t['covered']} Wh of "
          f"{t['generation']} Wh generated, {t['provisional_intervals']} provisional "
          f"member-intervals")
    print(f"root {body['root']}  document {doc_hash}")
    print(f"wrote {out / 'settlement.json'} and {out / 'members'}/")
    if previous is not None:
        old_lines = _statements(args.previous, None, [m["id"] for m in
                                                      previous.body["members"]])
        if old_lines is None:
            raise InputError(f"no statements beside {args.previous}: cannot show differences")
        diffs = member_diffs({m: totals_from_lines(ls) for m, ls in old_lines.items()},
                             result.totals)
        write_file(out / "differences.json", json.dumps(
            {"previous": previous.hash.hex(), "document": doc_hash, "members": diffs},
            indent=1, sort_keys=True).encode() + b"\n")
        print(f"differences from revision {previous.body['revision']}: "
              f"{len(diffs)} member(s) changed")
        for m, d in diffs.items():
            print(f"  {m}: " + ", ".join(f"{k} {v:+d}" for k, v in d.items()))
    return EXIT_OK


def _operator_key(text: str | None) -> bytes | None:
    return load_public_key(text) if text else None


def _against(args: argparse.Namespace) -> str | None:
    """What a verification reproduced the root against: the replica's URL, or its
    config for ``--config``; ``None`` for an intervals file (no replica copy)."""
    if args.replica:
        return str(args.replica)
    if getattr(args, "config", None):
        return f"config:{Path(args.config).resolve()}"
    return None


def cmd_verify(args: argparse.Namespace) -> int:
    record = getattr(args, "record", None)
    if record and _against(args) is None:
        raise InputError("--record needs --replica or --config: only a verification "
                         "against a replica's copy is recorded")
    try:
        doc = load_document(args.document, _operator_key(args.operator_key))
    except DocumentError as exc:
        print(f"FAILED {args.document}: {exc}")
        return EXIT_FAILURE
    community = load_community(args.community)
    period = parse_period(doc.body["period"]["label"], community.time_zone)
    data = _input(args, community, period)
    result = run(community, period, data)
    published = _statements(args.document, args.statements, list(doc.member_roots))
    try:
        compare(doc, result, list(data.sources), published)
    except SettlementMismatch as exc:
        print(f"FAILED {args.document}: {exc}")
        if record:
            args.recorder(record, doc.hash.hex(), _against(args), False, str(exc))
            print(f"recorded the failure in the replica of {record}")
        return EXIT_FAILURE
    b = doc.body
    if record:
        args.recorder(record, doc.hash.hex(), _against(args), True,
                      f"recomputed root {b['root']}")
        print(f"recorded in the replica of {record}: verified against {_against(args)}")
    print(f"OK {b['community']['name']} {b['period']['label']} revision {b['revision']}: "
          f"recomputed root {b['root']} ({b['totals']['members']} members, "
          f"{b['totals']['lines']} lines), signed by {b['operator_key']}")
    return EXIT_OK


def cmd_prove(args: argparse.Namespace) -> int:
    doc = load_document(args.document)  # refuses a file that is not a document, first
    with open(args.document, "rb") as fh:
        signed = json.loads(fh.read())
    if args.member not in doc.member_roots:
        raise InputError(f"member {args.member!r} is not in {args.document}")
    statements = Path(args.statements) if args.statements else (
        Path(args.document).resolve().parent / "members")
    lines = read_statement(statements / f"{args.member}.json")["lines"]
    select = starts = None
    if args.from_ms is not None or args.to_ms is not None:
        lo = args.from_ms if args.from_ms is not None else 0
        hi = args.to_ms if args.to_ms is not None else 2**63
        select = [i for i, ln in enumerate(lines)
                  if ln.startswith("I,") and lo <= int(ln.split(",")[2]) < hi]
        if not select:
            raise InputError(f"no interval of {args.member} starts in [{lo}, {hi})")
        starts = {int(lines[i].split(",")[2]) for i in select}
    readings = None
    config = getattr(args, "config", None)
    if args.replica or config:
        if not args.community:
            raise InputError(f"{'--replica' if args.replica else '--config'} needs "
                             "--community (which points are the member's)")
        community = load_community(args.community)
        try:
            m = community.member(args.member)
        except KeyError:
            raise InputError(f"{args.member!r} is not a member in {args.community}") from None
        inputs = load_intervals(args.intervals or str(Path(args.document).resolve().parent
                                                      / "intervals.json"))
        points = m.consumption + m.generation
        if args.replica:
            readings = member_readings(points, inputs, http_getter(args.replica, _token(args)),
                                       starts)
        else:
            with args.storage_source(config) as get:
                readings = member_readings(points, inputs, get, starts)
    proof = make_proof(signed, doc, args.member, lines, readings, select)
    blob = json.dumps(proof, indent=1).encode() + b"\n"
    if args.output == "-":
        sys.stdout.buffer.write(blob)
    else:
        write_file(Path(args.output), blob)
        extra = f" and {len(readings['proofs'])} signed readings" if readings else ""
        n = len(select) if select is not None else len(lines)
        print(f"wrote proof of {n} of {args.member}'s {len(lines)} lines{extra} to "
              f"{args.output}")
    return EXIT_OK


def cmd_verify_proof(args: argparse.Namespace) -> int:
    with open(args.proof, "rb") as fh:
        raw = fh.read()
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(f"FAILED {args.proof}: not JSON: {exc}")
        return EXIT_FAILURE
    try:
        doc, lines, proven = verify_proof(obj, _operator_key(args.operator_key))
    except DocumentError as exc:
        print(f"FAILED {args.proof}: {exc}")
        return EXIT_FAILURE
    b = doc.body
    print(f"OK {obj['member']} in {b['community']['name']} {b['period']['label']} revision "
          f"{b['revision']}: {len(lines)} lines proven against root {b['root']}")
    if lines[-1].startswith("T,"):
        t = totals_from_lines(lines)
        print("  " + ", ".join(f"{k} {v}" for k, v in t.items()))
    else:
        for ln in lines:
            print(f"  {ln}")
    if proven:
        meters = sorted({r.meter_id for r in proven})
        print(f"  {len(proven)} signed readings behind its intervals proven in the ledger "
              f"(meters {', '.join(meters)})")
    return EXIT_OK


def _source_args(p: argparse.ArgumentParser, storage_source: StorageSource | None, *,
                 proofs: bool = False) -> None:
    """``--intervals`` (not for proofs), ``--replica URL`` and, when the dispatcher gave
    an opener, ``--config REPLICA_TOML``: one of them."""
    what = "inclusion proofs of the member's readings" if proofs else "interval energy"
    g = p.add_mutually_exclusive_group(required=not proofs)
    if not proofs:
        g.add_argument("--intervals",
                       help="interval energy document (docs/settlement.md section 2)")
    g.add_argument("--replica", metavar="URL", help=f"read {what} from this replica")
    if storage_source is not None:
        g.add_argument("--config", metavar="REPLICA_TOML",
                       help=f"read {what} straight from this replica's storage")
        p.set_defaults(storage_source=storage_source)
    p.add_argument("--token-file", help=f"API token for --replica (else ${TOKEN_ENV})")


def cmd_verify_chain(args: argparse.Namespace) -> int:
    try:
        docs = [load_document(p, _operator_key(args.operator_key)) for p in args.documents]
        verify_revisions(docs)
    except DocumentError as exc:
        print(f"FAILED: {exc}")
        return EXIT_FAILURE
    b = docs[-1].body
    print(f"OK {b['community']['name']} {b['period']['label']}: revisions 0..{b['revision']} "
          f"chained, latest document {docs[-1].hash.hex()}")
    return EXIT_OK


def register(sub: Any, *, storage_source: StorageSource | None = None,
             recorder: Recorder | None = None) -> Any:
    """Add ``settle`` to the dispatcher; with ``storage_source``, its commands also take
    ``--config replica.toml``; with ``recorder``, ``verify`` takes ``--record
    replica.toml``. Returns the sub-command parsers (the dispatcher adds its own)."""
    p = sub.add_parser("settle", help="energy-community settlement: run, verify, prove",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="settle_command", metavar="SUBCOMMAND", required=True)
    r = s.add_parser("run", help="settle a period and sign the settlement document")
    r.add_argument("--community", required=True, help="community.toml")
    r.add_argument("--period", required=True, help="YYYY-MM (or YYYY-MM-DD), local time")
    _source_args(r, storage_source)
    r.add_argument("--key", required=True, help="operator Ed25519 key file (meterchain keygen)")
    r.add_argument("--out", required=True, help="directory for the document and statements")
    r.add_argument("--previous", help="the settlement.json this revision replaces")
    r.set_defaults(func=cmd_run)
    v = s.add_parser("verify", help="recompute a settlement and compare byte for byte")
    v.add_argument("document")
    v.add_argument("--community", required=True)
    _source_args(v, storage_source)
    v.add_argument("--statements", help="published statements (default: members/ beside it)")
    v.add_argument("--operator-key", help="expected operator public key (hex or file)")
    if recorder is not None:
        v.add_argument("--record", metavar="REPLICA_TOML",
                       help="record the result in this replica, where the document was "
                            "published (settle publish)")
        v.set_defaults(recorder=recorder)
    v.set_defaults(func=cmd_verify)
    pr = s.add_parser("prove", help="a member's lines with proofs against the signed root")
    pr.add_argument("document")
    pr.add_argument("--member", required=True)
    pr.add_argument("--statements", help="statements directory (default: members/ beside it)")
    pr.add_argument("-o", "--output", default="-", help="proof file (default: stdout)")
    pr.add_argument("--from-ms", type=int, help="only the intervals starting at or after "
                                                "this time (UTC ms), each with its own path")
    pr.add_argument("--to-ms", type=int, help="only the intervals starting before this time")
    _source_args(pr, storage_source, proofs=True)
    pr.add_argument("--community", help="community.toml (with --replica or --config)")
    pr.add_argument("--intervals", help="the run's input with traces (default: "
                                        "intervals.json beside the document)")
    pr.set_defaults(func=cmd_prove)
    vp = s.add_parser("verify-proof", help="check a member proof offline")
    vp.add_argument("proof")
    vp.add_argument("--operator-key", help="expected operator public key (hex or file)")
    vp.set_defaults(func=cmd_verify_proof)
    vc = s.add_parser("verify-chain", help="check that revisions of a period chain up")
    vc.add_argument("documents", nargs="+", help="settlement.json of revision 0, 1, ...")
    vc.add_argument("--operator-key", help="expected operator public key (hex or file)")
    vc.set_defaults(func=cmd_verify_chain)
    return s
