"""``meterchain sim``: the simulated meters of the demo, for technicians to practise on.

Serves, until Ctrl-C (or ``--seconds``), the same simulators the demo and the tests use,
speaking their real protocols over real transports:

- Modbus TCP meters by profile and unit (``--tcp eastron-sdm630:1``), on one TCP port;
- Modbus RTU meters on an RS-485 line made of two linked pseudo-terminals
  (``--rtu eastron-sdm120:1``): the gateway end is printed, a driver opens it as it
  would ``/dev/ttyUSB0``;
- SunSpec devices (``--sunspec inverter:1`` or ``meter:2``) on another TCP port;
- a DSMR P1 meter pushing telegrams (``--p1 v5``) and an IEC 62056-21 meter answering
  an optical head (``--d0``), each on a pseudo-terminal.

With no meter option it serves the demo's set. Fault modes are options: a Modbus
exception for every read (``--modbus-exception 2``), P1 faults (``--p1-fault bad-crc``)
and D0 faults (``--d0-fault silence``). It prints where each meter is, the ``scan``
and ``read`` commands to try and a ``[[meters]]`` config for ``config check`` and
``read --config``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers import profile
from ledger.errors import ConfigError

DEMO_TCP, DEMO_RTU, DEMO_SUNSPEC, DEMO_P1 = ["eastron-sdm630:1"], ["eastron-sdm120:1"], \
    ["inverter:1"], "v5"
"""What ``meterchain sim`` serves without meter options (the demo's meters, and a D0)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sim", help="serve simulated meters (Modbus TCP/RTU, SunSpec, P1, D0) until Ctrl-C",
        description="Serve the demo's simulated meters over their real protocols, to "
                    "practise scan, read and config check without hardware. Without meter "
                    "options: an SDM630 on Modbus TCP, an SDM120 on Modbus RTU (a pseudo-"
                    "terminal), a SunSpec inverter, a DSMR 5 P1 meter and an IEC 62056-21 "
                    "meter.")
    p.add_argument("--tcp", action="append", default=[], metavar="PROFILE[:UNIT]",
                   help="a Modbus TCP meter (repeat for more units on the same port)")
    p.add_argument("--rtu", action="append", default=[], metavar="PROFILE[:UNIT]",
                   help="a Modbus RTU meter on the simulated RS-485 line (repeatable)")
    p.add_argument("--sunspec", action="append", default=[], metavar="KIND[:UNIT]",
                   help="a SunSpec inverter or meter on Modbus TCP (repeatable)")
    p.add_argument("--p1", nargs="?", const="v5", default=None, metavar="VARIANT",
                   help="a DSMR P1 meter (v2.2, v3, v4, v5, be, lu; default v5)")
    p.add_argument("--d0", action="store_true", help="an IEC 62056-21 meter (optical head)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address for the TCP servers (default 127.0.0.1)")
    p.add_argument("--tcp-port", type=int, default=0, metavar="N",
                   help="Modbus TCP port (default: a free port, printed)")
    p.add_argument("--sunspec-port", type=int, default=0, metavar="N",
                   help="SunSpec TCP port (default: a free port, printed)")
    p.add_argument("--speed", type=float, default=60.0, metavar="X",
                   help="meter clock speed-up: energy counters rise X times faster "
                        "(default 60)")
    p.add_argument("--modbus-exception", type=int, default=None, metavar="CODE",
                   help="fault: every Modbus meter answers every read with this exception "
                        "code (2 illegal address, 4 device failure, 6 busy)")
    p.add_argument("--p1-fault", action="append", default=[], metavar="MODE",
                   help="fault for every 2nd P1 telegram: bad-crc, garbage, truncated, "
                        "silence (repeatable)")
    p.add_argument("--d0-fault", action="append", default=[], metavar="MODE",
                   help="fault of the D0 meter: silence, bad-bcc, garbage, no-readout, "
                        "echo, mode-b (repeatable)")
    p.add_argument("--write-config", metavar="FILE",
                   help="also write an agent config for these meters to FILE (its key "
                        "and ledger in FILE's directory), for `meterchain key init`, "
                        "`config check` and `read --config`")
    p.add_argument("--seconds", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: run until Ctrl-C)")
    p.set_defaults(func=cmd_sim)


@dataclass
class Plan:
    """What to serve, checked before anything starts."""

    tcp: list[tuple[profile.Profile, int]] = field(default_factory=list)
    rtu: list[tuple[profile.Profile, int]] = field(default_factory=list)
    sunspec: list[tuple[str, int]] = field(default_factory=list)
    p1: str | None = None
    d0: bool = False


def _unit_spec(flag: str, text: str) -> tuple[str, int]:
    name, _, unit = text.partition(":")
    if not name:
        raise ConfigError(flag, f"{text!r}: give NAME or NAME:UNIT")
    try:
        n = int(unit) if unit else 1
    except ValueError:
        raise ConfigError(flag, f"{text!r}: the unit id after ':' must be a number") from None
    if not 1 <= n <= 247:
        raise ConfigError(flag, f"{text!r}: unit ids are 1..247")
    return name, n


def _modbus(flag: str, items: list[str]) -> list[tuple[profile.Profile, int]]:
    out: list[tuple[profile.Profile, int]] = []
    seen: set[int] = set()
    for text in items:
        name, unit = _unit_spec(flag, text)
        try:
            prof = profile.load(name)
        except ConfigError as exc:
            raise ConfigError(flag, exc.message) from None
        if prof.protocol != "modbus":
            raise ConfigError(flag, f"{name} is a {prof.protocol} profile; use --sunspec")
        if unit in seen:
            raise ConfigError(flag, f"unit {unit} is given twice on one bus")
        seen.add(unit)
        out.append((prof, unit))
    return out


def plan_from_args(args: argparse.Namespace) -> Plan:
    """Check every option before anything is started.

    Raises:
        ConfigError: a bad option, named by its flag.
    """
    from drivers.sim import d0 as d0sim
    from drivers.sim import p1 as p1sim

    given = args.tcp or args.rtu or args.sunspec or args.p1 or args.d0
    tcp = args.tcp if given else DEMO_TCP
    rtu = args.rtu if given else DEMO_RTU
    sunspec = args.sunspec if given else DEMO_SUNSPEC
    p1: str | None = args.p1 if given else DEMO_P1
    d0 = bool(args.d0) if given else True
    plan = Plan(tcp=_modbus("--tcp", tcp), rtu=_modbus("--rtu", rtu), p1=p1, d0=d0)
    units: set[int] = set()
    for text in sunspec:
        kind, unit = _unit_spec("--sunspec", text)
        if kind not in ("inverter", "meter"):
            raise ConfigError("--sunspec", f"{kind!r}: give inverter or meter")
        if unit in units:
            raise ConfigError("--sunspec", f"unit {unit} is given twice")
        units.add(unit)
        plan.sunspec.append((kind, unit))
    if p1 is not None and p1 not in p1sim.HEADERS:
        raise ConfigError("--p1", f"{p1!r}: one of {', '.join(sorted(p1sim.HEADERS))}")
    for flag, modes, known in (("--p1-fault", args.p1_fault, p1sim.FAULTS),
                               ("--d0-fault", args.d0_fault, d0sim.FAULTS)):
        bad = sorted(set(modes) - known)
        if bad:
            raise ConfigError(flag, f"unknown mode {bad[0]!r}; known: {', '.join(sorted(known))}")
    if args.modbus_exception is not None and not 1 <= args.modbus_exception <= 255:
        raise ConfigError("--modbus-exception", "an exception code is 1..255")
    for flag, port in (("--tcp-port", args.tcp_port), ("--sunspec-port", args.sunspec_port)):
        if not 0 <= port <= 65535:
            raise ConfigError(flag, f"{port} is not a TCP port (0 for a free one)")
    if not 0 < args.speed <= 1_000_000:
        raise ConfigError("--speed", f"{args.speed:g} is not in (0, 1000000]")
    if args.seconds is not None and not 0 < args.seconds <= 86_400 * 365:
        raise ConfigError("--seconds", f"{args.seconds:g} is not a positive duration")
    return plan


def cmd_sim(args: argparse.Namespace) -> int:
    plan = plan_from_args(args)
    return asyncio.run(serve(plan, args, print))


async def serve(plan: Plan, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Start everything in ``plan``, print where it is, wait for Ctrl-C, stop it all."""
    import logging

    from drivers.sim.d0 import D0SimConfig, D0Simulator
    from drivers.sim.meter import MeterServer, SimUnit
    from drivers.sim.model import MeterModel
    from drivers.sim.p1 import P1SimConfig, P1Simulator, P1State
    from drivers.sim.pty import PtyPair
    from drivers.sim.sunspec import sunspec_unit

    if not args.verbose:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    fail = args.modbus_exception
    lines: list[str] = []
    config: list[str] = []
    tries: list[str] = []
    workdir = tempfile.mkdtemp(prefix="meterchain-sim-")
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(os.rmdir, workdir)
        if plan.tcp:
            srv = MeterServer([SimUnit(u, p, MeterModel(speed=args.speed), fail_with=fail)
                               for p, u in plan.tcp], host=args.host, tcp_port=args.tcp_port)
            await _start_tcp(srv, "--tcp-port", stack)
            for p, u in plan.tcp:
                lines.append(f"  Modbus TCP  {p.name:<20} unit {u:<3} {args.host}:{srv.tcp_port}")
                config.append(_meter(f"tcp-{p.name}-{u}", "modbus-tcp", host=args.host,
                                     tcp_port=srv.tcp_port, unit=u, profile=p.name))
            p0, u0 = plan.tcp[0]
            tries.append(f"meterchain read --host {args.host} --tcp-port {srv.tcp_port} "
                         f"--profile {p0.name} --unit {u0}")
        if plan.rtu:
            pair = PtyPair(workdir, "rs485")
            meter_end, gateway_end = stack.enter_context(pair)
            line = os.path.realpath(gateway_end)
            srv = MeterServer([SimUnit(u, p, MeterModel(speed=args.speed), fail_with=fail)
                               for p, u in plan.rtu], transport="rtu", port=meter_end)
            await srv.start()
            stack.push_async_callback(srv.stop)
            for p, u in plan.rtu:
                lines.append(f"  Modbus RTU  {p.name:<20} unit {u:<3} {line} (9600 8N1)")
                config.append(_meter(f"rtu-{p.name}-{u}", "modbus-rtu", port=line,
                                     baudrate=9600, unit=u, profile=p.name))
            ids = sorted(u for _, u in plan.rtu)
            tries.append(f"meterchain scan --port {line} --ids 1-{max(ids[-1], 5)}")
            p0, u0 = plan.rtu[0]
            tries.append(f"meterchain read --port {line} --profile {p0.name} --unit {u0}")
        if plan.sunspec:
            units = []
            for kind, u in plan.sunspec:
                unit = sunspec_unit(u, kind=kind)
                unit.fail_with = fail
                units.append(unit)
            srv = MeterServer(units, host=args.host, tcp_port=args.sunspec_port)
            await _start_tcp(srv, "--sunspec-port", stack)
            for kind, u in plan.sunspec:
                lines.append(f"  SunSpec     {'sunspec-' + kind:<20} unit {u:<3} "
                             f"{args.host}:{srv.tcp_port}")
                config.append(_meter(f"sunspec-{kind}-{u}", "sunspec-tcp", host=args.host,
                                     tcp_port=srv.tcp_port, unit=u))
            tries.append(f"meterchain scan --host {args.host} --tcp-port {srv.tcp_port} "
                         f"--ids 1-{max(u for _, u in plan.sunspec)}")
        if plan.p1 is not None:
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
            p1 = P1Simulator(P1SimConfig(
                variant=plan.p1, interval_s=1.0, faults=frozenset(args.p1_fault),
                state=P1State(utc=now, gas_utc=now.replace(second=0))))
            stack.enter_context(p1)
            lines.append(f"  DSMR P1     {plan.p1:<20} {'':<8} {p1.port} (a telegram a second)")
            config.append(_meter("p1", "dsmr-p1", port=p1.port, poll_interval_s=10.0,
                                 timeout_s=3.0))
            tries.append(f"meterchain read --p1 {p1.port}")
        if plan.d0:
            d0 = D0Simulator(D0SimConfig(faults=frozenset(args.d0_fault)))
            stack.enter_context(d0)
            lines.append(f"  IEC 62056-21 {'(optical head)':<19} {'':<8} {d0.port}")
            config.append(_meter("d0", "iec62056-21", port=d0.port, poll_interval_s=30.0,
                                 timeout_s=5.0))
            tries.append(f"meterchain read --d0 {d0.port}")
        faults = [f"Modbus exception {fail}" if fail else "",
                  f"P1 {', '.join(args.p1_fault)}" if args.p1_fault else "",
                  f"D0 {', '.join(args.d0_fault)}" if args.d0_fault else ""]
        shown = "; ".join(f for f in faults if f)
        out("meterchain sim: simulated meters" + (f" (faults: {shown})" if shown else ""))
        for line in lines:
            out(line)
        out("try:")
        for t in tries:
            out(f"  {t}")
        if args.write_config:
            path = write_config(args.write_config, config)
            out(f"wrote {path}; then:")
            out(f"  meterchain key init --config {path}")
            out(f"  meterchain config check {path}")
            out(f"  meterchain read --config {path}")
        else:
            out("a config for `meterchain config check` / `meterchain read --config` "
                "(add [gateway], or use --write-config FILE):")
            for block in config:
                out(block)
        until = f"for {args.seconds:g} s" if args.seconds else "until Ctrl-C"
        out(f"serving {until}")
        sys.stdout.flush()
        if args.seconds:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.seconds)
        else:
            await stop.wait()
        out("meterchain sim: stopped")
    return 0


async def _start_tcp(srv: Any, flag: str, stack: contextlib.AsyncExitStack) -> None:
    """Start a TCP MeterServer; its port is printed, so a refused fixed port is an error.

    Raises:
        ConfigError: the port cannot be listened on.
    """
    try:
        await srv.start()
    except OSError as exc:
        raise ConfigError(flag, f"cannot listen on {srv.host}:{srv.tcp_port}: "
                          f"{exc.strerror}") from None
    stack.push_async_callback(srv.stop)


def write_config(path: str, meters: list[str]) -> str:
    """Write an agent config for the served meters; key, ledger and state go beside it
    (the state's directory is made, as the installed unit's StateDirectory is, so that the
    config passes `config check` once `key init` has made the key).

    Raises:
        ConfigError: the file or the state directory cannot be written.
    """
    d = os.path.dirname(os.path.abspath(path))
    text = (f'# written by `meterchain sim` for practice\n[gateway]\nname = "sim"\n'
            f'key_path = "{d}/sim-keys/gateway.key"\nledger_dir = "{d}/sim-ledger"\n'
            f'state_path = "{d}/sim-state/state.json"\n' + "".join(meters) + "\n")
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.makedirs(f"{d}/sim-state", exist_ok=True)  # the config's directory exists now
    except OSError as exc:
        raise ConfigError("--write-config", f"cannot write {exc.filename or path}: "
                          f"{exc.strerror}") from None
    return os.path.abspath(path)


def _meter(meter_id: str, driver: str, **keys: Any) -> str:
    rows = [f'\n[[meters]]\nid = "{meter_id}"\ndriver = "{driver}"']
    for k, v in keys.items():
        rows.append(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}")
    if "poll_interval_s" not in keys:
        rows.append("poll_interval_s = 5.0")
    return "\n".join(rows)


__all__ = ["Plan", "cmd_sim", "plan_from_args", "register", "serve"]
