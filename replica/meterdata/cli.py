"""``meterchain replica meter|reindex|intervals|readings|status``: meter data on the CLI.

These commands open the replica's database directly (like ``enroll`` and ``list``),
with the config's storage URL and utility key. They accept a gateway's name wherever
they accept its key, and ISO 8601 dates and times (or milliseconds) wherever they
accept times; a bare date in ``--from``/``--to``/``--at`` is local midnight in ``--tz``.
``register(replica_subparsers)`` adds them (called from :mod:`replica.cli`).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, TextIO

from ledger.errors import MeterchainError

DEFAULT_CONFIG = "replica.toml"


class MeterDataCliError(MeterchainError):
    """A meter-data command was given something it cannot use (the message says what)."""


def register(sub: Any) -> None:
    """Add the meter-data commands to the ``replica`` sub-command group."""

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", default=DEFAULT_CONFIG,
                       help=f"replica config file (default {DEFAULT_CONFIG})")
        return p

    def with_tz(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tz", default="Europe/Vienna",
                       help="time zone of dates without an offset (default %(default)s)")

    mp = sub.add_parser("meter", help="metering points: roles, members, registers, meters",
                        description="Manage the metering-point registry.")
    msub = mp.add_subparsers(dest="meter_command", metavar="ACTION", required=True)

    for name, text in (("add", "create a metering point"),
                       ("set", "change a metering point's fields")):
        p = with_config(msub.add_parser(name, help=text))
        p.add_argument("point", metavar="POINT", help="metering point id, e.g. miller-grid")
        p.add_argument("--role", required=name == "add",
                       help="grid, pv, battery, ev-charger, heat-pump or sub-meter")
        p.add_argument("--member", help="member or household the point belongs to")
        p.add_argument("--import", dest="imports", action="append", metavar="OBIS",
                       help="energy-in register or pattern (repeatable; default 1-0:1.8.x)")
        p.add_argument("--export", dest="exports", action="append", metavar="OBIS",
                       help="energy-out register or pattern (repeatable; default 1-0:2.8.x)")
        p.add_argument("--rated-max-w", type=int, help="rated maximum power in W")
        p.add_argument("--modulus", type=int, help="register modulus in Wh (rollover)")
        p.set_defaults(func=cmd_meter_add if name == "add" else cmd_meter_set)

    p = with_config(msub.add_parser("assign", help="a meter measures a point from a time on"))
    p.add_argument("point", metavar="POINT")
    p.add_argument("--gateway", required=True, help="gateway name or key")
    p.add_argument("--meter", required=True, help="meter id as in the gateway's readings")
    p.add_argument("--from", dest="frm", default=None,
                   help="from when (date, ISO 8601 time or ms; default: always)")
    p.add_argument("--to", default=None, help="until when (default: open)")
    with_tz(p)
    p.set_defaults(func=cmd_meter_assign)

    p = with_config(msub.add_parser("remove", help="delete a metering point"))
    p.add_argument("point", metavar="POINT")
    p.set_defaults(func=cmd_meter_remove)

    p = with_config(msub.add_parser("list", help="metering points and unassigned meters"))
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_meter_list)

    p = with_config(msub.add_parser("import", help="load metering points from a TOML file"))
    p.add_argument("file", metavar="FILE", help="registry file (docs/replica-api.md)")
    with_tz(p)
    p.set_defaults(func=cmd_meter_import)

    p = with_config(sub.add_parser("reindex", help="drop and rebuild the readings index "
                                   "from the stored blocks"))
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_reindex)

    p = with_config(sub.add_parser("intervals", help="energy per interval per metering point"))
    p.add_argument("--gateway", help="gateway name or key")
    p.add_argument("--meter", help="meter id on --gateway")
    p.add_argument("--member", help="member or household")
    p.add_argument("--point", help="metering point id")
    p.add_argument("--from", dest="frm", required=True, help="start: date, ISO 8601 or ms")
    p.add_argument("--to", required=True, help="end: a bare date includes that day")
    p.add_argument("--interval", default="15m", help="15m, 30m, 1h, day or month "
                   "(default %(default)s)")
    with_tz(p)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--traces", action="store_true",
                   help="the (gateway, height, index) of the readings behind each boundary")
    p.set_defaults(func=cmd_intervals)

    p = with_config(sub.add_parser("readings", help="raw readings of a gateway as CSV"))
    p.add_argument("--gateway", required=True, help="gateway name or key")
    p.add_argument("--meter", action="append", default=[], help="only this meter (repeatable)")
    p.add_argument("--register", action="append", default=[], metavar="OBIS",
                   help="only this register (repeatable)")
    p.add_argument("--from", dest="frm", default="0", help="start: date, ISO 8601 or ms")
    p.add_argument("--to", default=str(2**63 - 1), help="end: a bare date includes that day")
    with_tz(p)
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_readings)

    p = with_config(sub.add_parser("status", help="which gateways are silent or behind"))
    p.add_argument("--silent-after", default="1h", help="no push for this long: silent")
    p.add_argument("--behind-after", default="1h",
                   help="newest reading older than this: behind")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)


# --- plumbing ----------------------------------------------------------------------------


class _Opened:
    """The storage, meter data and utility key of a replica config, closed on exit."""

    def __init__(self, config: str) -> None:
        import keyfiles
        from replica.config import load_config
        from replica.meterdata.query import MeterData
        from replica.storage.base import open_storage

        cfg = load_config(config)
        sk = (keyfiles.load_utility_secret(cfg.utility_secret_key)
              if cfg.utility_secret_key is not None else None)
        self.storage = open_storage(cfg.storage_url, pool_size=1)
        try:
            self.md = MeterData(self.storage, sk)
        except BaseException:
            self.storage.close()
            raise

    def __enter__(self) -> _Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        self.storage.close()


def _refused(exc: Exception) -> MeterDataCliError:
    from replica.errors import Refusal

    if isinstance(exc, Refusal):
        return MeterDataCliError(exc.detail)
    return MeterDataCliError(str(exc))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- registry ----------------------------------------------------------------------------


def _point_from_args(args: argparse.Namespace, base: Any = None) -> Any:
    from replica.meterdata.registry import make_point

    return make_point(
        args.point, args.role or base.role,
        member=args.member if args.member is not None else (base.member if base else None),
        import_registers=args.imports or (base.import_registers if base else None),
        export_registers=args.exports or (base.export_registers if base else None),
        rated_max_w=args.rated_max_w if args.rated_max_w is not None
        else (base.rated_max_w if base else None),
        register_modulus=args.modulus if args.modulus is not None
        else (base.register_modulus if base else None))


def cmd_meter_add(args: argparse.Namespace) -> int:
    with _Opened(args.config) as o:
        p = _point_from_args(args)
        o.md.store.put_point(p, create_only=True)
    print(f"metering point {p.point_id} ({p.role}) added")
    return 0


def cmd_meter_set(args: argparse.Namespace) -> int:
    with _Opened(args.config) as o:
        base = o.md.store.point(args.point)
        if base is None:
            raise MeterDataCliError(f"no metering point {args.point!r} (add it first)")
        p = _point_from_args(args, base)
        o.md.store.put_point(p)
    print(f"metering point {p.point_id} updated")
    return 0


def _time(text: str | None, tz: str, field: str, default: int | None) -> int | None:
    from replica.meterdata import calendar
    from replica.meterdata.errors import MeterDataInputError

    if text is None:
        return default
    try:
        return calendar.parse_instant(text, calendar.zone(tz), field=field)
    except MeterDataInputError as exc:
        raise MeterDataCliError(str(exc)) from None


def assign(md: Any, point_id: str, gateway: str, meter: str, from_ms: int,
           to_ms: int | None) -> Any:
    """Assign a meter to a point from ``from_ms``; the point's assignment open at that
    time is ended there (a replaced or moved meter).

    Raises:
        RegistryError: unknown point, or the meter measures another point then.
        Refusal: unknown gateway.
    """
    from dataclasses import replace

    from replica.meterdata.query import resolve_gateway
    from replica.meterdata.registry import Assignment, RegistryError, check_assignments

    if md.store.point(point_id) is None:
        raise RegistryError("POINT", f"no metering point {point_id!r} (add it first)")
    gw = resolve_gateway(md.storage, gateway)
    new = Assignment(point_id, gw.key, meter, from_ms, to_ms)
    mine = []
    for a in md.store.assignments(point_id):
        if a.from_ms == from_ms:
            continue  # replaced by the new one
        if a.from_ms < from_ms and (a.to_ms is None or a.to_ms > from_ms):
            a = replace(a, to_ms=from_ms)
        elif a.from_ms > from_ms and (to_ms is None or to_ms > a.from_ms):
            raise RegistryError("--to", f"{point_id!r} has a later assignment from "
                                f"{a.from_ms}: end this one before it (--to)")
        mine.append(a)
    others = [a for a in md.store.assignments() if a.point_id != point_id]
    check_assignments(others + mine, new)
    md.store.replace_assignments(point_id, sorted([*mine, new], key=lambda a: a.from_ms))
    return gw


def cmd_meter_assign(args: argparse.Namespace) -> int:
    from replica.errors import Refusal

    frm = _time(args.frm, args.tz, "from", 0)
    to = _time(args.to, args.tz, "to", None)
    assert frm is not None
    with _Opened(args.config) as o:
        try:
            gw = assign(o.md, args.point, args.gateway, args.meter, frm, to)
        except Refusal as exc:
            raise _refused(exc) from None
    print(f"meter {args.meter} on {gw.name} measures {args.point} from {frm}"
          + (f" to {to}" if to is not None else ""))
    return 0


def cmd_meter_remove(args: argparse.Namespace) -> int:
    with _Opened(args.config) as o:
        o.md.store.remove_point(args.point)
    print(f"metering point {args.point} removed")
    return 0


def cmd_meter_list(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from replica.meterdata.listing import registry_json

    out = out or sys.stdout
    with _Opened(args.config) as o:
        doc = registry_json(o.md)
    if args.json:
        print(json.dumps(doc), file=out)
        return 0
    print_registry(doc, out)
    return 0


def print_registry(doc: dict[str, Any], out: TextIO) -> None:
    """The registry as text (``replica meter list`` and ``replica list``)."""
    from replica.enroll import format_time

    print(f"{'POINT':24}  {'ROLE':10}  {'MEMBER':20}  METERS", file=out)
    for p in doc["points"]:
        meters = "; ".join(
            f"{m['gateway_name'] or m['gateway'][:16]}/{m['meter']} from "
            f"{format_time(m['from_ms']) if m['from_ms'] else 'always'}"
            + (f" to {format_time(m['to_ms'])}" if m["to_ms"] is not None else "")
            for m in p["meters"]) or "-"
        print(f"{p['point']:24}  {p['role']:10}  {(p['member'] or '-'):20}  {meters}", file=out)
    print(f"{len(doc['points'])} metering point(s)", file=out)
    if doc["unassigned"]:
        print("unassigned meters (readings indexed, no metering point):", file=out)
        for u in doc["unassigned"]:
            print(f"  {u['gateway_name'] or u['gateway'][:16]}/{u['meter']}: "
                  f"{', '.join(u['registers'])}", file=out)


def cmd_meter_import(args: argparse.Namespace) -> int:
    from replica.errors import Refusal
    from replica.meterdata.registry import parse_registry_file

    path = Path(args.file)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise MeterDataCliError(f"{path}: not valid TOML: {exc}") from None
    entries = parse_registry_file(data, source=str(path))
    with _Opened(args.config) as o:
        for point, meters in entries:
            o.md.store.put_point(point)
            o.md.store.replace_assignments(point.point_id, [])
            for i, m in enumerate(meters):
                where = f"point[{point.point_id}].meter[{i}]"
                frm = _time(m.get("from"), args.tz, f"{where}.from", 0)
                to = _time(m.get("to"), args.tz, f"{where}.to", None)
                assert frm is not None
                try:
                    assign(o.md, point.point_id, m["gateway"], m["meter"], frm, to)
                except Refusal as exc:
                    raise MeterDataCliError(f"{path}: {where}.gateway: {exc.detail}") from None
    print(f"imported {len(entries)} metering point(s) from {path}")
    return 0


# --- index ------------------------------------------------------------------------------


def cmd_reindex(args: argparse.Namespace) -> int:
    from replica.meterdata.indexer import reindex

    def progress(done: int, total: int, readings: int) -> None:
        if not args.quiet:
            print(f"\rreindex: {done}/{total} gateways, {readings} readings", end="",
                  file=sys.stderr, flush=True)

    t0 = time.monotonic()
    with _Opened(args.config) as o:
        n = reindex(o.storage, o.md.store, o.md.utility_sk, progress)
        skipped = sum(s.sealed_skipped for s in o.md.store.index_states().values())
    if not args.quiet:
        print(file=sys.stderr)
    dt = time.monotonic() - t0
    print(f"indexed {n} readings in {dt:.1f} s"
          + (f"; {skipped} sealed block(s) not indexed (no utility key configured)"
             if skipped else ""))
    return 0


# --- queries ------------------------------------------------------------------------------


def cmd_intervals(args: argparse.Namespace) -> int:
    from replica.errors import Refusal
    from replica.meterdata.indexer import catch_up
    from replica.meterdata.query import (
        CSV_COLUMNS,
        csv_rows,
        parse_request,
        series_json,
    )

    with _Opened(args.config) as o:
        md = o.md
        try:
            req = parse_request(args.frm, args.to, args.interval, args.tz)
            targets = md.targets(gateway=args.gateway, meter=args.meter, member=args.member,
                                 point=args.point, start_ms=req.start_ms, end_ms=req.end_ms)
            for key in {s.gateway.key for t in targets for s in t.sources}:
                catch_up(md.storage, md.store, key, md.utility_sk)
            series = [s for t in targets for s in md.series(t, req)]
        except Refusal as exc:
            raise _refused(exc) from None
    if args.format == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        w.writerows(csv_rows(series, req, traces=args.traces))
        return 0
    docs = [series_json(s, req, traces=args.traces) for s in series]
    if args.format == "json":
        print(json.dumps({"from_ms": req.start_ms, "to_ms": req.end_ms,
                          "interval_ms": req.interval_ms,
                          "interval": req.aggregate or args.interval, "tz": req.tz.key,
                          "unit": "Wh", "series": docs}))
        return 0
    print_intervals(docs, args.traces, sys.stdout)
    return 0


def print_intervals(docs: list[dict[str, Any]], traces: bool, out: TextIO) -> None:
    """Interval series as text tables, each with its totals and findings."""
    if not docs:
        print("no metering point or meter matches", file=out)
    for d in docs:
        who = d["point"] or d["label"]
        extra = f" ({d['role']}, member {d['member'] or '-'})" if d["point"] else " (unassigned)"
        meters = ", ".join(f"{m['gateway_name']}/{m['meter']}" for m in d["meters"])
        print(f"{who}{extra} {d['direction']}  registers {', '.join(d['registers']) or '-'}"
              f"  meters {meters}", file=out)
        print(f"  {'START':25}  {'WH':>10}  {'QUALITY':11}  RULE"
              + ("  TRACE (gateway:height:index)" if traces else ""), file=out)
        for iv in d["intervals"]:
            wh = "-" if iv["wh"] is None else str(iv["wh"])
            line = f"  {iv['start']:25}  {wh:>10}  {iv['quality']:11}  {iv['rule'] or '-'}"
            if traces:
                line += "  " + " ".join(f"{o['gateway'][:8]}:{o['height']}:{o['index']}"
                                        for o in iv["end_trace"])
            print(line, file=out)
        counts = ", ".join(f"{v} {k}" for k, v in d["quality_counts"].items() if v)
        print(f"  total {d['total_wh']} Wh ({counts or 'no intervals'})", file=out)
        for f in d["findings"]:
            origins = " ".join(f"{o['gateway'][:8]}:{o['height']}:{o['index']}"
                               for o in f["origins"])
            print(f"  finding {f['time']} {f['kind']} ({f['effect']}): {f['detail']} "
                  f"[{origins}]", file=out)


def cmd_readings(args: argparse.Namespace) -> int:
    from replica.errors import Refusal
    from replica.meterdata import calendar
    from replica.meterdata.errors import MeterDataInputError
    from replica.meterdata.query import resolve_gateway
    from replica.meterdata.readings import check_readings_query, readings_export

    try:
        frm, to = calendar.parse_range(args.frm, args.to, calendar.zone(args.tz))
    except MeterDataInputError as exc:
        raise MeterDataCliError(str(exc)) from None
    with _Opened(args.config) as o:
        try:
            rec = resolve_gateway(o.storage, args.gateway)
            filt = check_readings_query(o.storage, rec, frm, to, o.md.utility_sk, args.meter,
                                        args.register)
            export = readings_export(o.storage, rec, frm, to, o.md.utility_sk, filt)
        except Refusal as exc:
            raise _refused(exc) from None
        if args.output:
            with open(args.output, "wb") as f:
                f.writelines(export.chunks())
        else:
            sys.stdout.flush()
            sys.stdout.buffer.writelines(export.chunks())
            sys.stdout.buffer.flush()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from replica.enroll import format_time
    from replica.meterdata.errors import MeterDataInputError
    from replica.meterdata.status import parse_duration, status_json

    try:
        silent = parse_duration(args.silent_after, "--silent-after")
        behind = parse_duration(args.behind_after, "--behind-after")
    except MeterDataInputError as exc:
        raise MeterDataCliError(str(exc)) from None
    with _Opened(args.config) as o:
        doc = status_json(o.md, _now_ms(), silent, behind)
    if args.json:
        print(json.dumps(doc))
        return 0
    print(f"{'STATE':8}  {'NAME':20}  {'HEIGHT':>8}  {'LAST PUSH':24}  {'AGO':>9}  "
          f"{'NEWEST READING':24}  {'AGO':>9}")
    for r in doc["gateways"]:
        print(f"{r['state']:8}  {r['name'][:20]:20}  {r['height']:>8}  "
              f"{format_time(r['last_seen_ms']):24}  {_ago(r['last_seen_age_s']):>9}  "
              f"{format_time(r['newest_reading_ms']):24}  {_ago(r['newest_reading_age_s']):>9}")
    print(f"{len(doc['gateways'])} gateway(s): {doc['silent']} silent, {doc['behind']} behind")
    return 0


def _ago(s: int | None) -> str:
    if s is None:
        return "never"
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"
