"""Ledger commands: keygen, verify, export, show, prove, verify-proof.

Exit codes: 0 success; 1 the command ran and found the ledger, export or proof invalid
(the first failing height and reason are printed); 2 bad input (missing path, not a
ledger, unreadable key, unsafe key permissions), printed as one line by the dispatcher.
``verify`` of a ledger directory reads the segment files alone (never the indexes) and
counts a torn or damaged tail, garbage after the last block and a segment holding only its
header as invalid (exit 1, ``malformed`` at the chain position): only a ledger whose every
byte checks out is OK.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import keyfiles as keys
import ledger
from agent.storage.dirverify import verify_ledger_dir
from agent.storage.store import BlockStore, StoreOptions
from ledger import export, prooffile
from ledger.errors import ChainError, KeyFileError, StoreCorruptError, StoreError

EXIT_OK = 0
EXIT_INVALID = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ledger commands to the ``meterchain`` dispatcher."""
    p = sub.add_parser("keygen", help="generate the gateway key (and a utility key pair)")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the key files")
    p.add_argument("--utility", action="store_true",
                   help="also generate the utility's X25519 key pair (utility.key/.pub)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("verify", help="verify a ledger directory or an export file")
    p.add_argument("path", metavar="PATH", help="ledger directory or export file")
    p.add_argument("--gateway-key", metavar="HEX|FILE", help="require this gateway key")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("export", help="write a portable export file of a ledger")
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("show", help="summarise a ledger: head, heights, counts, disk use")
    p.add_argument("ledger", metavar="LEDGER")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("prove", help="write an inclusion proof of one reading")
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("--height", type=int, required=True, help="block height")
    p.add_argument("--index", type=int, required=True, help="reading index within the block")
    p.add_argument("-o", "--output", metavar="FILE", help="proof file (default: stdout)")
    p.add_argument("--utility-key", metavar="FILE",
                   help="utility.key, to open a sealed block")
    p.set_defaults(func=cmd_prove)

    p = sub.add_parser("verify-proof", help="check an inclusion proof file")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--gateway-key", metavar="HEX|FILE", help="require this gateway key")
    p.set_defaults(func=cmd_verify_proof)


# --- helpers -------------------------------------------------------------------------


def _open_ledger(path: str) -> BlockStore:
    p = Path(path)
    if not p.exists():
        raise StoreError(f"{p}: no such ledger directory")
    if not p.is_dir():
        raise StoreError(f"{p}: not a ledger directory")
    return BlockStore.open(p, options=StoreOptions(read_only=True, create=False))


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _failed(what: str, exc: Exception) -> int:
    if isinstance(exc, ChainError):
        where = f" at height {exc.height}" if exc.height is not None else ""
        print(f"FAILED {what}{where}: {exc.reason}: {exc.message}")
    else:
        print(f"FAILED {what}: corrupt-store: {exc}")
    return EXIT_INVALID


def _gateway_key(arg: str | None) -> bytes | None:
    return None if arg is None else keys.load_public_key(arg)


def _reading_text(r: ledger.Reading) -> str:
    return (f"{r.meter_id} {r.obis} = {r.decimal} {r.unit} at {_when(r.timestamp_ms)} "
            f"(clock {r.clock.name.lower()}, quality {r.quality:#06x})")


# --- commands --------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    names = [keys.GATEWAY_KEY, keys.GATEWAY_PUB]
    if args.utility:
        names += [keys.UTILITY_KEY, keys.UTILITY_PUB]
    for name in names:  # check all first: never leave half a set behind
        if (out / name).exists():
            raise KeyFileError(f"{out / name}: already exists; refusing to overwrite a key")
    public = keys.generate_gateway_key(out)
    print(f"gateway public key: {public.hex()}")
    print(f"  wrote {out / keys.GATEWAY_KEY} (private, mode 0600) and {out / keys.GATEWAY_PUB}")
    if args.utility:
        upub = keys.generate_utility_key(out)
        print(f"utility public key: {upub.hex()}")
        print(f"  wrote {out / keys.UTILITY_KEY} (private, mode 0600) and "
              f"{out / keys.UTILITY_PUB}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    path = Path(args.path)
    gateway_key = _gateway_key(args.gateway_key)
    if not path.exists():
        raise StoreError(f"{path}: no such ledger directory or export file")
    try:
        if path.is_dir():
            what = f"ledger {path}"
            result = verify_ledger_dir(path, gateway_key=gateway_key)
        else:
            what = f"export {path}"
            with open(path, "rb") as f:
                result = export.verify_export(f, gateway_key=gateway_key)
    except (ChainError, StoreCorruptError) as exc:
        return _failed(f"verifying {path}", exc)
    if result.head is None:
        print(f"OK: {what} is empty (no blocks)")
        return EXIT_OK
    head = result.head
    print(f"OK: verified heights {result.first_height}..{head.height} of {what} "
          f"({result.blocks} blocks, {result.readings} readings)")
    print(f"height verified: {head.height}")
    print(f"head hash: {head.hash.hex()}")
    print(f"gateway key: {head.header.gateway_key.hex()}")
    if result.first_height > 0:
        print(f"note: heights below {result.first_height} were pruned; verification started "
              f"from a trusted height: block {result.first_height} is linked to nothing before it")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.exists():
        raise StoreError(f"{out}: already exists; refusing to overwrite")
    if not out.parent.is_dir():  # else the error would name the temporary file
        raise StoreError(f"cannot write {out}: {out.parent}: directory does not exist")
    tmp = out.with_name(f".{out.name}.tmp")
    with _open_ledger(args.ledger) as store:
        first, count = store.first_height, store.height - store.first_height + 1
        try:
            with open(tmp, "wb") as f:
                n = export.write_export(f, store.iter_records(first), first, count)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    last = first + count - 1
    print(f"wrote {out}: {count} blocks (heights {first}..{last}), {n:,} bytes")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    with _open_ledger(args.ledger) as store:
        print(f"ledger      : {store.directory}")
        if store.head is None:
            print("blocks      : 0 (empty ledger)")
        else:
            head = store.head
            blocks = readings = 0
            sealed = 0
            for rec in store.iter_records(store.first_height):
                h = ledger.Header.decode(rec[: ledger.HEADER_SIZE])
                blocks += 1
                readings += h.reading_count
                sealed += h.payload_encoding is ledger.PayloadEncoding.SEALED
            print(f"gateway key : {head.header.gateway_key.hex()}")
            print(f"heights     : {store.first_height}..{head.height}"
                  + (f" (heights below {store.first_height} pruned)" if store.first_height else ""))
            print(f"blocks      : {blocks} ({sealed} sealed to a utility key)")
            print(f"readings    : {readings}")
            print(f"head        : height {head.height}, hash {head.hash.hex()}")
            print(f"head time   : {_when(head.header.time_start_ms)} .. "
                  f"{_when(head.header.time_end_ms)}")
        print(f"segments    : {store.segment_count}")
        print(f"disk use    : {store.disk_usage():,} bytes")
    return EXIT_OK


def cmd_prove(args: argparse.Namespace) -> int:
    usk = keys.load_utility_secret(args.utility_key) if args.utility_key else None
    with _open_ledger(args.ledger) as store:
        block = store.get(args.height)
    if block.header.payload_encoding is ledger.PayloadEncoding.SEALED and usk is None:
        raise KeyFileError(f"block {args.height} is sealed to a utility key; pass "
                           "--utility-key utility.key to open it")
    if not 0 <= args.index < block.header.reading_count:
        raise StoreError(f"reading index {args.index} out of range: block {args.height} "
                         f"holds {block.header.reading_count} readings")
    proof = ledger.prove_reading(block, args.index, usk)
    text = prooffile.proof_to_json(proof)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    out = Path(args.output)
    if out.exists():
        raise StoreError(f"{out}: already exists; refusing to overwrite")
    out.write_text(text, encoding="ascii")
    reading, _ = ledger.decode_reading(proof.encoded_reading)
    print(f"wrote {out}: reading {args.index} of block {args.height}: {_reading_text(reading)}")
    return EXIT_OK


def cmd_verify_proof(args: argparse.Namespace) -> int:
    gateway_key = _gateway_key(args.gateway_key)
    path = Path(args.file)
    text = path.read_bytes()
    try:
        proof, reading = prooffile.verify_proof_text(text, gateway_key)
    except ChainError as exc:
        return _failed(f"verifying proof {path}", exc)
    h = proof.header
    print(f"OK: reading {proof.index} of {h.reading_count} is in block {h.height} "
          f"(hash {ledger.header_hash(h.encode()).hex()})")
    print(f"signed by gateway key {h.gateway_key.hex()}"
          + ("" if gateway_key else " (not pinned: pass --gateway-key to require it)"))
    print(f"reading: {_reading_text(reading)}")
    return EXIT_OK
