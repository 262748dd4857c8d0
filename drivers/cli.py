"""Technician commands: ``drivers``, ``profile list|show``, ``scan`` and ``read``.

Every failure is printed by the dispatcher as one line naming what to check; a
device that sends garbage, stays silent or refuses a register never crashes a command.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, TextIO

from drivers import base, decode, profile, quantities
from drivers.modbus_bus import Bus, BusKey, SerialSettings, acquire, check_serial_port
from drivers.serialport import check_line
from ledger import Quality, Reading
from ledger.errors import (
    ConfigError,
    DeviceError,
    DeviceExceptionResponse,
    DeviceTimeout,
    FrameError,
)

if TYPE_CHECKING:
    from drivers.modbus import RegisterResult
    from drivers.sunspec import PointResult


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("drivers", help="list meter protocols and profiles")
    p.set_defaults(func=cmd_drivers)

    p = sub.add_parser("profile", help="list meter profiles or show one")
    psub = p.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    q = psub.add_parser("list", help="list profiles on the search path")
    q.set_defaults(func=cmd_profile_list)
    q = psub.add_parser("show", help="print a profile's quantities")
    q.add_argument("name", help="profile name or .toml path")
    q.set_defaults(func=cmd_profile_show)

    p = sub.add_parser("scan", help="find Modbus devices on a bus and suggest profiles")
    _where(p)
    p.add_argument("--baud", default="9600", help="comma list of baud rates (serial)")
    p.add_argument("--parity", default="N", help="comma list of parities N,E,O (serial)")
    p.add_argument("--ids", default="1-247", help="unit ids, e.g. 1-247 or 1,2,10-20")
    p.add_argument("--timeout", type=float, default=0.2, help="seconds per probe (default 0.2)")
    p.set_defaults(func=cmd_scan)



def add_read_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``read`` sub-command's parser (registered by :mod:`agent.cli.read`, which adds
    ``--config`` on top: reading an agent config is the agent's business)."""
    p = sub.add_parser("read", help="read one meter (or a config's meters) once and print "
                                    "every value",
                       description="Read a meter once and print every value it gave; a "
                                   "register the meter refuses is marked with its error. "
                                   "Exit 0 if everything was read, 1 if some values failed, "
                                   "2 if nothing could be read or on a usage error.")
    _where(p)
    p.add_argument("--p1", metavar="DEV", help="DSMR P1 port")
    p.add_argument("--d0", metavar="DEV", help="IEC 62056-21 optical head port")
    p.add_argument("--profile", help="profile name or .toml path (Modbus, SunSpec)")
    p.add_argument("--unit", type=int, default=1, help="Modbus unit id")
    p.add_argument("--baud", type=int, default=None, help="baud rate (serial)")
    p.add_argument("--parity", default=None, help="N, E or O (serial)")
    p.add_argument("--timeout", type=float, default=READ_TIMEOUT_S,
                   help="seconds per request (default %(default)s; a P1 read waits at "
                        "least two telegram intervals plus one second, and says so)")
    p.add_argument("--raw", action="store_true", help="print every frame in hex on stderr")
    p.set_defaults(func=cmd_read)
    return p


READ_TIMEOUT_S = 1.0
"""``read --timeout`` default."""

NO_DEVICE_CODES = frozenset({4, 10, 11})
"""Exception codes a TCP gateway (or a pymodbus server) sends for an absent unit id
(see the hint for code 4 in :data:`drivers.modbus_bus.MODBUS_EXCEPTIONS`)."""

FLAGS = {"baudrate": "--baud", "parity": "--parity", "unit": "--unit",
         "tcp_port": "--tcp-port", "timeout_s": "--timeout"}
"""MeterSpec field -> the ``read`` flag that sets it (for error messages)."""


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", metavar="DEV", help="serial device of the RS-485 adapter "
                   "(/dev/ttyUSB0); not with --host: a TCP port is --tcp-port")
    p.add_argument("--host", help="Modbus TCP device or serial gateway (IP or name)")
    p.add_argument("--tcp-port", type=int, default=502, metavar="N",
                   help="TCP port with --host (default 502)")
    p.add_argument("--rtu-over-tcp", action="store_true",
                   help="the host is a transparent serial gateway (RTU frames over TCP)")


def _check_where(args: argparse.Namespace) -> None:
    """Refuse --port with --host (a TCP port given as --port would be read as a device).

    Raises:
        ConfigError: both given, or --tcp-port out of range.
    """
    if args.host and args.port:
        hint = (f"for TCP port {args.port} use --tcp-port {args.port}"
                if args.port.isdigit() else "give one of them")
        raise ConfigError("--port", f"--port names a serial device and cannot be combined "
                          f"with --host; {hint}")
    if not 1 <= args.tcp_port <= 65535:
        raise ConfigError("--tcp-port", f"{args.tcp_port} is not a TCP port (1..65535)")


def _check_timeout(value: float) -> float:
    """Raises ConfigError unless 0 < value <= 60 seconds."""
    if not 0 < value <= 60:
        raise ConfigError("--timeout", f"{value:g} is not in (0, 60] seconds")
    return value


def table(rows: list[list[str]], header: list[str], out: TextIO | None = None) -> None:
    """Print an aligned text table (to stdout unless ``out`` is given)."""
    out = out or sys.stdout
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(),
              file=out)


def cmd_drivers(args: argparse.Namespace) -> int:
    table([[n, d] for n, d in sorted(base.drivers().items())], ["protocol", "description"])
    print()
    return cmd_profile_list(args)


def cmd_profile_list(args: argparse.Namespace) -> int:
    rows = []
    for name, path in sorted(profile.available().items()):
        try:
            p = profile.load_file(path)
            rows.append([name, p.manufacturer, p.model, p.protocol])
        except ConfigError as exc:
            rows.append([name, "INVALID", str(exc), ""])
    table(rows, ["profile", "manufacturer", "model", "protocol"])
    return 0


def cmd_profile_show(args: argparse.Namespace) -> int:
    p = profile.load(args.name)
    print(f"{p.name}: {p.manufacturer} {p.model} ({p.protocol})\n  datasheet: {p.datasheet}"
          f"\n  file: {p.source}")
    if p.probe:
        print(f"  probe: function {p.probe.function} register {p.probe.address} {p.probe.type}")
    if p.identify:
        d = p.identify
        codes = ", ".join(map(str, d.equals)) or f"{d.minimum}..{d.maximum}"
        print(f"  model code: function {d.function} register {d.address} {d.type} = {codes}")
    rows = []
    for r in p.registers:
        q = quantities.lookup(r.quantity)
        rows.append([q.name, r.quantity, q.unit, str(r.function), str(r.address), r.type,
                     str(r.scale), str(r.exponent)])
    for pt in p.points:
        q = quantities.lookup(pt.quantity)
        rows.append([q.name, pt.quantity, q.unit, "3", "/".join(map(str, pt.models)), pt.point,
                     "SF", str(pt.exponent)])
    table(rows, ["quantity", "obis", "unit", "fn", "register", "type", "scale", "exp"])
    return 0


def parse_ids(text: str) -> list[int]:
    """``1-5,9`` -> [1, 2, 3, 4, 5, 9]. Raises ConfigError on a bad range."""
    ids: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            ids += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        raise ConfigError("--ids", f"{text!r} is not like 1-247 or 1,2,10-20") from None
    if not ids or not all(1 <= i <= 247 for i in ids):
        raise ConfigError("--ids", f"{text!r}: unit ids are 1..247 (0 is broadcast, "
                          "which no device answers)")
    return ids


def _settings(args: argparse.Namespace) -> list[SerialSettings | None]:
    if not args.port:
        return [None]
    out: list[SerialSettings | None] = []
    for b in args.baud.split(","):
        if not b.strip().isdigit():
            raise ConfigError("--baud", f"{b!r} is not a baud rate (e.g. 9600,19200)")
        for par in args.parity.split(","):
            try:
                baud, parity, _, _ = check_line(int(b), par.strip(), None, None)
            except ConfigError as exc:
                raise ConfigError(f"--{exc.path.replace('baudrate', 'baud')}",
                                  exc.message) from None
            out.append(SerialSettings(baud, parity))
    return out


def _key(args: argparse.Namespace) -> BusKey:
    if args.port:
        return BusKey("serial", args.port)
    if not args.host:
        raise ConfigError("--port/--host", "give --port DEV (serial) or --host HOST (TCP)")
    return BusKey("rtu-tcp" if args.rtu_over_tcp else "tcp", f"{args.host}:{args.tcp_port}")


def cmd_scan(args: argparse.Namespace) -> int:
    try:
        found = asyncio.run(scan(args))
    finally:
        _bar.end()
    if not found:
        print("no devices answered; check wiring, termination, baud rate and parity")
        return 1
    table([[s, str(u), suggestion(names, exact)] for s, u, names, exact in found],
          ["settings", "unit", "suggested profiles"])
    return 0


def suggestion(names: list[str], exact: bool) -> str:
    """How a scan reports the profiles that fit a device: one (or several confirmed by a
    model code) plainly, candidates it cannot tell apart as "one of: ..."."""
    if not names:
        return "(none match; device answers)"
    if exact or len(names) == 1:
        return ", ".join(names)
    return "one of: " + ", ".join(names) + " (same probe register; no model code to tell)"


async def identify(bus: Bus, unit: int, timeout: float,
                   candidates: list[profile.Profile]) -> tuple[list[str], bool]:
    """Narrow the profiles whose probe matched with their ``[identify]`` model-code registers.

    Returns the names to suggest and whether they are confirmed by a model code. A
    candidate whose code register holds another value, or does not exist (exception
    response), is dropped; one that cannot be checked (timeout, bad frame) is kept.
    """
    values: dict[tuple[int, int, str, str, str], int | float | None | Exception] = {}
    confirmed: list[str] = []
    dropped: set[str] = set()
    for p in candidates:
        d = p.identify
        if d is None:
            continue
        key = (d.function, d.address, d.type, d.word_order, d.byte_order)
        if key not in values:
            try:
                words = await bus.read_registers(d.function, d.address,
                                                 decode.TYPES[d.type].registers, unit, timeout)
                values[key] = decode.decode_raw(d.type, words, d.word_order, d.byte_order)
            except DeviceExceptionResponse as exc:
                values[key] = exc  # the device has no such register
            except (DeviceTimeout, FrameError):
                values[key] = None  # unknown: neither confirms nor drops
        value = values[key]
        if value is None:
            continue
        if isinstance(value, Exception) or not d.matches(value):
            dropped.add(p.name)
        else:
            confirmed.append(p.name)
    if confirmed:
        return confirmed, True
    return [p.name for p in candidates if p.name not in dropped], False


async def scan(args: argparse.Namespace, progress: Callable[[str], None] | None = None
               ) -> list[tuple[str, int, list[str], bool]]:
    """Walk settings x ids; for each answering unit, the profiles whose probe matches,
    narrowed by model codes (:func:`identify`), and whether a model code confirmed them.

    Raises:
        ConfigError: bad arguments. DeviceError: the port cannot be opened.
    """
    _check_where(args)
    _check_timeout(args.timeout)
    ids = parse_ids(args.ids)
    key = _key(args)
    settings = _settings(args)
    if key.kind == "serial":
        check_serial_port(key.where)
    probes: dict[tuple[int, int, str, str, str], list[profile.Profile]] = {}
    for name in sorted(profile.available()):
        p = profile.load(name)
        if p.probe is not None:
            k = (p.probe.function, p.probe.address, p.probe.type, p.probe.word_order,
                 p.probe.byte_order)
            probes.setdefault(k, []).append(p)
    total, done, t0 = len(settings) * len(ids), 0, time.monotonic()
    show = progress or _bar
    found: list[tuple[str, int, list[str], bool]] = []
    for s in settings:
        bus = acquire(key, s)
        try:
            for unit in ids:
                done += 1
                show(f"{done}/{total} {s.describe() if s else key.where} unit {unit} "
                     f"({time.monotonic() - t0:.0f} s)|{done / total}")
                matched: list[profile.Profile] = []
                alive = False
                for (fn, addr, typ, wo, bo), profs in probes.items():
                    try:
                        words = await bus.read_registers(fn, addr, decode.TYPES[typ].registers,
                                                         unit, args.timeout)
                    except DeviceTimeout:
                        if not alive:
                            break  # nobody home at this id: skip the other probes
                        continue
                    except DeviceExceptionResponse as exc:
                        if exc.code in NO_DEVICE_CODES:
                            break  # a gateway/server saying nobody is at this id
                        alive = True  # a device answered, just not to this probe
                        continue
                    except FrameError:
                        alive = True
                        continue
                    alive = True
                    raw = decode.decode_raw(typ, words, wo, bo)  # type: ignore[arg-type]
                    matched += [p for p in profs if p.probe and p.probe.matches(raw)]
                if alive and not matched:
                    sunspec = await sunspec_profiles(bus, unit, args.timeout)
                    if sunspec is not None:
                        found.append((s.describe() if s else key.where, unit, sunspec, True))
                        continue
                if alive:
                    names, exact = await identify(bus, unit, args.timeout,
                                                  sorted(matched, key=lambda p: p.name))
                    found.append((s.describe() if s else key.where, unit, names, exact))
        finally:
            await bus.release()
    show("done|1")
    return found


async def sunspec_profiles(bus: Bus, unit: int, timeout: float) -> list[str] | None:
    """For a device no probe register matched: if it has a SunSpec map (the 'SunS'
    marker at a standard base), the SunSpec profiles that read one of its models, with
    the base and model ids (None when it has no SunSpec map or does not answer)."""
    from drivers.sunspec import find_chain

    async def read(address: int, count: int) -> list[int]:
        return await bus.read_registers(3, address, count, unit, timeout)

    try:
        chain = await find_chain(read)
    except DeviceError:
        return None
    if chain is None:
        return None
    ids = [m.model for m in chain.models]
    names = []
    for name in sorted(profile.available()):
        p = profile.load(name)
        if p.protocol == "sunspec" and any(m in ids for pt in p.points for m in pt.models):
            names.append(name)
    where = f"SunSpec at {chain.base}, models {', '.join(map(str, ids))}; driver sunspec-*"
    return [f"{', '.join(names) or '(no profile reads these models)'} ({where})"]


class _ProgressBar:
    """A one-line progress bar on stderr; :meth:`end` finishes the line (also on error)."""

    def __init__(self) -> None:
        self.open = False

    def __call__(self, text: str) -> None:
        label, _, frac = text.rpartition("|")
        n = int(float(frac) * 30)
        sys.stderr.write(f"\r[{'#' * n}{'.' * (30 - n)}] {label:<50}")
        self.open = True
        if float(frac) >= 1:
            self.end()
        sys.stderr.flush()

    def end(self) -> None:
        if self.open:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.open = False


_bar = _ProgressBar()


def spec_from_args(args: argparse.Namespace) -> base.MeterSpec:
    """The MeterSpec ``read`` opens. Raises ConfigError if no meter is named."""
    if args.p1:
        return base.MeterSpec("p1", "dsmr-p1", port=args.p1, timeout_s=args.timeout)
    if args.d0:
        return base.MeterSpec("cli", "iec62056-21", port=args.d0, timeout_s=args.timeout)
    _check_where(args)
    if not args.profile:
        raise ConfigError("--profile", "give --profile NAME (see `meterchain profile list`)")
    sunspec = profile.load(args.profile).protocol == "sunspec"
    if args.port:
        proto = "sunspec-rtu" if sunspec else "modbus-rtu"
        return base.MeterSpec("cli", proto, port=args.port, unit=args.unit,
                              profile=args.profile, baudrate=args.baud,
                              parity=args.parity, timeout_s=args.timeout)
    if not args.host:
        raise ConfigError("--port/--host", "give --port DEV, --host HOST, --p1 DEV or --d0 DEV")
    proto = ("sunspec-tcp" if sunspec else
             "modbus-rtu-over-tcp" if args.rtu_over_tcp else "modbus-tcp")
    return base.MeterSpec("cli", proto, host=args.host, tcp_port=args.tcp_port, unit=args.unit,
                          profile=args.profile, timeout_s=args.timeout)


def cmd_read(args: argparse.Namespace) -> int:
    _check_timeout(args.timeout)
    spec = spec_from_args(args)
    try:
        rows = asyncio.run(read_once(spec, args.raw))
    except ConfigError as exc:  # a spec field is named after its flag on the command line
        flag = FLAGS.get(exc.path)
        if flag is None:
            raise
        raise ConfigError(flag, exc.message, source=exc.source) from None
    print_rows(rows)
    return 1 if any(r.error for r in rows) else 0


def waiting(text: str) -> None:
    """Say on stderr what a command waits for (stdout stays the table)."""
    print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Row:
    """One line of a read: a reading, or the quantity and the error that kept it."""

    meter: str
    obis: str
    reading: Reading | None = None
    error: str | None = None


def print_rows(rows: list[Row], *, with_meter: bool = False, out: TextIO | None = None) -> None:
    """The read table: quantity, OBIS, value, unit, and an error column when one failed."""
    failed = any(r.error for r in rows)
    header = (["meter"] if with_meter else []) + ["quantity", "obis", "value", "unit"] + (
        ["error"] if failed else [])
    lines = []
    for row in rows:
        q = quantities.QUANTITIES.get(row.obis)
        cells = [row.meter] if with_meter else []
        cells.append(q.name if q else ("-" if row.obis == "-" else "?"))
        cells.append(row.obis)
        if row.reading is not None:
            value = Decimal(row.reading.value).scaleb(row.reading.exponent)
            flag = " (rounded)" if row.reading.quality & Quality.ROUNDED else ""
            cells += [f"{value}{flag}", row.reading.unit]
        else:
            cells += ["FAILED" if row.error else "(left out)", q.unit if q else ""]
        if failed:
            cells.append(row.error or "")
        lines.append(cells)
    table(lines, header, out)


async def read_once(spec: base.MeterSpec, raw: bool = False) -> list[Row]:
    """Open, read once, close: every value, each failed register with its error.

    Raises:
        ConfigError: a bad spec. DeviceError: nothing at all could be read.
    """
    from drivers.modbus import ModbusMeter
    from drivers.sunspec import SunSpecMeter

    meter = base.open_meter(spec)
    bus = getattr(meter, "bus", None)
    if raw and bus is not None:
        bus.tracers.append(lambda sending, data: print(
            f"{'->' if sending else '<-'} {data.hex(' ')}", file=sys.stderr))
    wait = getattr(getattr(meter, "config", None), "telegram_timeout_s", None)
    if spec.protocol == "dsmr-p1" and wait is not None:
        waiting(f"{spec.meter_id}: waiting up to {wait:g} s for a P1 telegram on {spec.port} "
                "(a DSMR 5 meter sends one every second, older ones every 10 s)")
    now_ms = int(time.time() * 1000)
    results: Sequence[RegisterResult | PointResult]
    try:
        if isinstance(meter, ModbusMeter | SunSpecMeter):
            results = await meter.read_each(now_ms)
        else:  # a serial telegram is read whole or not at all
            return [Row(spec.meter_id, r.obis, r) for r in await meter.read(now_ms)]
    finally:
        await meter.close()
    errors = [res.error for res in results if res.error is not None]
    if errors and len(errors) == len(results):
        raise errors[0]  # nothing was read: one line naming what to check
    return [Row(spec.meter_id, res.quantity, res.reading,
                None if res.error is None else f"{res.error}") for res in results]
