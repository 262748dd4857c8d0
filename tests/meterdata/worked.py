"""The worked examples of docs/intervals.md: load the fixtures, run them, render tables.

The fixtures (tests/meterdata/fixtures/*.json) hold readings and the expected results,
worked out by hand in the doc. test_worked_examples.py runs the engine on each and
checks that the doc quotes exactly the tables :func:`render` makes from the fixture.
To print the blocks for the doc: ``python -m tests.meterdata.worked``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from replica.meterdata import RegisterColumns
from replica.meterdata.calendar import parse_interval

FIXTURES = Path(__file__).with_name("fixtures")
DOC = Path(__file__).resolve().parents[2] / "docs" / "intervals.md"
NAMES = ["boundary", "gap-40min", "gap-5h", "rollover", "dst"]


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def iso(ms_: int) -> str:
    return datetime.fromtimestamp(ms_ / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def columns(fx: dict[str, Any]) -> RegisterColumns:
    return RegisterColumns.from_rows(
        [
            (
                ms(s["ts"]),
                s["wh"],
                s["origin"][0],
                s["origin"][1],
                s["origin"][2],
                s.get("flags", 0),
            )
            for s in fx["samples"]
        ]
    )


def engine_kwargs(fx: dict[str, Any]) -> dict[str, Any]:
    p = fx["params"]
    kw: dict[str, Any] = {"interval_ms": parse_interval(p["interval"])}
    if "start" in p:
        kw["start_ms"], kw["end_ms"] = ms(p["start"]), ms(p["end"])
    for key in ("tolerance_ms", "register_modulus", "rated_max_w", "max_linear_gap_ms"):
        if key in p:
            kw[key] = p[key]
    return kw


def local(ms_: int, tz: ZoneInfo) -> str:
    """``2026-10-25T02:45+02:00``: local time with its offset."""
    d = datetime.fromtimestamp(ms_ / 1000, UTC).astimezone(tz)
    return d.isoformat(timespec="minutes")


def _t(iso_: str, dated: bool, secs: bool = False) -> str:
    if dated:
        return iso_[5:16].replace("T", " ")
    return iso_[11:19] if secs else iso_[11:16]


def _o(o: list[Any]) -> str:
    return f"{o[1]}.{o[2]}"


def _trace(tr: list[list[Any]]) -> str:
    return "+".join(_o(o) for o in tr) or "-"


def render(fx: dict[str, Any]) -> str:
    """The markdown tables of one fixture, as docs/intervals.md quotes them."""
    if fx["name"] == "dst":
        return _render_dst(fx)
    dated = len({s["ts"][:10] for s in fx["samples"]}) > 1
    when = "(UTC)" if not dated else "(UTC, month-day)"
    lines = [f"Readings ({fx['params']['interval']} intervals"]
    extra = {k: v for k, v in fx["params"].items() if k not in ("start", "end", "interval")}
    if extra:
        lines[0] += ", " + ", ".join(f"{k} {v}" for k, v in extra.items())
    lines[0] += "):"
    lines += ["", f"| time {when} | register Wh | origin | flags |", "|---|---:|---|---|"]
    for s in fx["samples"]:
        flags = s.get("flags", 0)
        lines.append(
            f"| {_t(s['ts'], dated, secs=True)} | {s['wh']} | {_o(s['origin'])} | "
            f"{f'0x{flags:04x}' if flags else ''} |"
        )
    lines += ["", "Boundaries:", "", f"| boundary {when} | register Wh | how |", "|---|---:|---|"]
    for b in fx["boundaries"]:
        wh = "" if b["wh"] is None else b["wh"]
        lines.append(f"| {_t(b['at'], dated)} | {wh} | {b['how']} |")
    lines += [
        "",
        "Intervals:",
        "",
        f"| interval {when} | Wh | quality | rule | start trace | end trace |",
        "|---|---:|---|---|---|---|",
    ]
    for i in fx["intervals"]:
        wh = "" if i["wh"] is None else i["wh"]
        lines.append(
            f"| {_t(i['start'], dated)}–{_t(i['end'], dated)} | {wh} | {i['quality']} | "
            f"{i['rule'] or ''} | {_trace(i['start_trace'])} | {_trace(i['end_trace'])} |"
        )
    if fx["findings"]:
        lines += [
            "",
            "Findings:",
            "",
            "| kind | reading at | compared with | effect | origins |",
            "|---|---|---|---|---|",
        ]
        for f in fx["findings"]:
            since = _t(f["since"], dated, secs=True) if f.get("since") else ""
            lines.append(
                f"| {f['kind']} | {_t(f['ts'], dated, secs=True)} | {since} | {f['effect']} | "
                f"{_trace(f['origins'])} |"
            )
    return "\n".join(lines)


def _render_dst(fx: dict[str, Any]) -> str:
    lines = [
        f"Days in {fx['params']['tz']} ({fx['params']['interval']} intervals, readings every "
        "15 minutes, 15 Wh each):",
        "",
        "| local day | UTC start | UTC end | hours | intervals | Wh | quality |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for d in fx["days"]:
        lines.append(
            f"| {d['day']} | {d['start']} | {d['end']} | {d['hours']} | {d['intervals']} | "
            f"{d['wh']} | {d['quality']} |"
        )
    lines += [
        "",
        "The quarter-hours around the change on 2026-10-25:",
        "",
        "| UTC | local | Wh | quality |",
        "|---|---|---:|---|",
    ]
    for i in fx["excerpt"]:
        lines.append(
            f"| {i['start'][11:16]}–{i['end'][11:16]} | {i['local_start'][11:]} – "
            f"{i['local_end'][11:]} | {i['wh']} | {i['quality']} |"
        )
    return "\n".join(lines)


def begin(name: str) -> str:
    return f"<!-- fixture {name}.json: generated by tests/meterdata/worked.py -->"


def end(name: str) -> str:
    return f"<!-- end fixture {name}.json -->"


def quoted(doc: str, name: str) -> str:
    """The block of ``doc`` between the markers for fixture ``name`` (stripped)."""
    a = doc.index(begin(name)) + len(begin(name))
    b = doc.index(end(name), a)
    return doc[a:b].strip()


if __name__ == "__main__":
    for n in NAMES:
        print(begin(n))
        print(render(load(n)))
        print(end(n))
        print()
