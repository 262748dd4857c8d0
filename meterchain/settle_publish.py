"""``meterchain settle publish DIR --config replica.toml`` and ``settle verify --record``.

Publishing hands a finished settlement (the directory ``settle run`` wrote) to a
replica: the signed document as it is on disk, each member's statement files (JSON and
CSV) and the community's energy per interval (:func:`settlement.flows.community_flows`
over the statements' lines). Before anything is stored, the document is verified
(signature and root) and each statement's lines are checked against the member's root
in the document, with the settlement code; the replica then checks sizes, shape and
the signature again on its side (``replica.settlements``) and stores everything in one
transaction, or nothing.

``settle verify ... --record replica.toml`` keeps the verification's result (which
replica copy the root was reproduced against, when, and whether it matched) in the
replica where the document was published. Both live in the wiring package:
``settlement/`` never imports ``replica/`` (``tests/test_import_layers.py``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from settlement.document import load_document, member_root
from settlement.errors import DocumentError, InputError
from settlement.flows import community_flows
from settlement.statements import read_statement


@contextmanager
def settlement_store(config_path: str) -> Iterator[Any]:
    """The settlement tables of the replica configured in ``config_path``.

    Raises:
        ConfigError: not a valid replica config.
        ReplicaStoreError: the database cannot be opened.
    """
    from replica.config import load_config
    from replica.settlements.store import SettlementStore
    from replica.storage.base import open_storage

    cfg = load_config(config_path)
    storage = open_storage(cfg.storage_url, pool_size=1)
    try:
        yield SettlementStore(storage)
    finally:
        storage.close()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def read_settlement(directory: Path) -> tuple[bytes, list[tuple[str, bytes, bytes]],
                                              list[tuple[int, ...]]]:
    """The document bytes, ``(member, statement JSON, statement CSV)`` and the flows of
    the settlement in ``directory``, each statement checked against the document.

    Raises:
        DocumentError: the document does not verify, or a statement's lines do not
            give the member's root.
        OSError: a file is missing or unreadable.
    """
    doc_path = directory / "settlement.json"
    doc = load_document(str(doc_path))
    raw = doc_path.read_bytes()
    statements = []
    lines_all = []
    for member, root in doc.member_roots.items():
        js, cs = (directory / "members" / f"{member}.{ext}" for ext in ("json", "csv"))
        st = read_statement(js)
        if member_root(st["lines"]) != root:
            raise DocumentError(f"{js}: its lines do not give {member}'s root in {doc_path}")
        statements.append((member, js.read_bytes(), cs.read_bytes()))
        lines_all.append(st["lines"])
    return raw, statements, community_flows(lines_all)


def publish_dir(directory: Path, config_path: str) -> tuple[Any, bool]:
    """Publish the settlement in ``directory`` to the replica of ``config_path``.

    Returns the document's checked metadata and whether it was new.

    Raises:
        DocumentError, OSError: as :func:`read_settlement`.
        SettlementRejected: the replica refuses it (size, shape, signature, conflict).
        ReplicaStoreError, ConfigError: as :func:`settlement_store`.
    """
    from replica.settlements.intake import check_document
    from replica.settlements.store import publication

    raw, statements, flows = read_settlement(directory)
    pub = publication(check_document(raw), raw, statements, flows)
    with settlement_store(config_path) as store:
        return pub.meta, store.publish(pub, _now_ms())


def record(config_path: str, doc_hash: str, against: str, ok: bool, detail: str) -> None:
    """Record a verification result in the replica of ``config_path``.

    Raises:
        SettlementRejected: the document is not published there, or ``against`` is bad.
    """
    from replica.settlements.intake import check_verifier

    with settlement_store(config_path) as store:
        store.record_verification(doc_hash, check_verifier(against), ok, detail, _now_ms())


def cmd_publish(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if not (directory / "settlement.json").is_file():
        raise InputError(f"{directory}: no settlement.json (the --out of settle run)")
    meta, new = publish_dir(directory, args.config)
    what = "published" if new else "already published (unchanged)"
    print(f"{what}: {meta.community} {meta.period} revision {meta.revision}, "
          f"{len(meta.members)} members, document {meta.doc_hash}, root {meta.root}")
    return 0


def add_publish(settle: Any) -> None:
    """Add ``publish`` to ``settle``'s sub-commands."""
    p = settle.add_parser("publish", help="store a settlement in a replica for its web view "
                                          "and API (document, statements, community flows)")
    p.add_argument("dir", help="the settlement's directory (the --out of settle run)")
    p.add_argument("--config", required=True, metavar="REPLICA_TOML",
                   help="the replica to publish to (its replica.toml)")
    p.set_defaults(func=cmd_publish)
