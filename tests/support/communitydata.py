"""A community settlement for the web view's tests and ``bench/ui.py``, produced by
really running the settlement on fixed readings and publishing it to a replica.

The readings are :mod:`settlement.synthetic`'s (fixed seed: the same every run); the
numbers come from ``meterchain settle run`` over them and reach the replica through
``meterchain settle publish`` and ``settle verify --record``, the commands an operator
uses. Nothing here computes a settlement figure itself.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keyfiles
from meterchain.cli import main as meterchain
from settlement.period import parse_period
from settlement.synthetic import community_toml, intervals

PERIOD = "2026-11"
DAY = "2026-11-14"
"""A day of the period the tests look at."""
TIME_ZONE = "Europe/Vienna"
NAME = "sunny-lane"
SEED = 7


@dataclass(frozen=True)
class Settled:
    """A settlement run and published: its directory, document and community file."""

    directory: Path
    document: dict[str, Any]
    doc_hash: str
    community_toml: Path
    intervals: Path


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, str, list)):
        return json.dumps(v)
    raise TypeError(f"no TOML for {v!r}")


def toml_text(data: dict[str, Any]) -> str:
    """``community.toml`` text for :func:`settlement.synthetic.community_toml`'s dict
    (tables of scalars and string lists, and an array of member tables)."""
    out = []
    for table, body in data.items():
        rows = body if isinstance(body, list) else [body]
        for row in rows:
            out.append(f"[[{table}]]" if isinstance(body, list) else f"[{table}]")
            out += [f"{k} = {_toml_value(v)}" for k, v in row.items()]
            out.append("")
    return "\n".join(out)


def _cli(*argv: str | Path) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = meterchain([str(a) for a in argv])
    if code != 0:
        raise RuntimeError(f"meterchain {' '.join(map(str, argv))} exited {code}: "
                           f"{buf.getvalue()}")
    return buf.getvalue()


def settle(work: Path, *, members: int = 6, producers: int = 2, period: str = PERIOD,
           seed: int = SEED) -> Settled:
    """Run ``meterchain settle run`` over the synthetic community's fixed readings."""
    work.mkdir(parents=True, exist_ok=True)
    community = work / "community.toml"
    community.write_text(toml_text(community_toml(members, producers, name=NAME,
                                                  time_zone=TIME_ZONE)))
    p = parse_period(period, TIME_ZONE)
    data = intervals(members, producers, p.start_ms, (p.end_ms - p.start_ms) // 900_000,
                     seed=seed, estimated_every=97)
    readings = work / "intervals.json"
    readings.write_text(json.dumps(data.as_json()))
    keyfiles.generate_gateway_key(work / "operator")
    out = work / "settled"
    _cli("settle", "run", "--community", community, "--period", period, "--intervals",
         readings, "--key", work / "operator" / keyfiles.GATEWAY_KEY, "--out", out)
    raw = (out / "settlement.json").read_bytes()
    from settlement.document import verify_document

    doc = verify_document(json.loads(raw))
    return Settled(out, json.loads(raw), doc.hash.hex(), community, readings)


def replica_toml(work: Path, storage_url: str) -> Path:
    """A replica config naming ``storage_url`` (for ``--config``)."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "replica.toml"
    path.write_text(f"[storage]\nurl = {json.dumps(storage_url)}\n")
    return path


def publish(settled: Settled, config: Path) -> str:
    """``meterchain settle publish`` the settlement to the replica of ``config``."""
    return _cli("settle", "publish", settled.directory, "--config", config)
